"""`premium-support demo`: the whole pipeline in one process, fed a scenario, shown live.

intake, sla_timer and notifier run in threads of this process on kombu's in-memory
transport (`memory://`), with their SQLite stores in a temporary folder: no broker, no
network, no port. Escalations go to console channels (`examples/demo/oncall.yaml`).

The default scenario is `examples/demo/scenario.yaml`, played with the packaged default
policy (`services/sla_timer/default_policy.yaml`). Its requests carry create times in the
past, because an SLA clock starts when the customer submitted, not when we saw it:

- t+0s  a Super Admin's business-critical email form, submitted 29m35s ago: its 30-minute
  guarantee breaches about 25 s into the demo. Its warning (10 min before) is already
  due, so it fires at once; opening pages level 1.
- t+1s  a raw MIME email from a Super Admin (standard, 1 hour guaranteed) sent 44m48s
  ago: it is warned 15 minutes before its deadline, about 12 s in.
- then a chat (5-minute target, missed at about 20 s: a team notice, never a page),
  a phone callback request, an email from a user who is not a Super Admin (a business
  day, best effort) and a broken message (dead-lettered, not lost).
- once the business-critical page went out, on-call acknowledges it (helpdesk
  `acknowledged`); once the MIME email was warned, an agent answers it (helpdesk
  `first_response`, before its deadline: `sla.met`).
- at about 25 s the business-critical clock breaches: levels 1 and 2 are paged.

The demo ends when every outcome in the scenario's `expect` list happened (exit 0), or
at its timeout (exit 1, naming what did not happen), with a summary table. On a terminal
it shows a live view (tickets with deadlines counting down, escalations, the checklist);
otherwise it prints one line per event. `premium-support demo --scenario FILE` plays a
scenario of one's own; the format is in `services.demo.scenario`.
"""

from services.demo.pipeline import SetupError
from services.demo.run import DEFAULT_SCENARIO, run_demo
from services.demo.scenario import ScenarioError, load_scenario

__all__ = ["DEFAULT_SCENARIO", "ScenarioError", "SetupError", "load_scenario", "run_demo"]
