"""notifier: decide who is on call and escalate tickets to them, once per reason.

The pure core (no I/O except reading the on-call file; the current instant is passed in):

- `oncall_model`, `oncall_rules`: the on-call file (`ONCALL_FILE`) as pydantic models:
  people, weekly rotations with overrides, escalation levels; the team channel and the
  when-to-notify rules (example: `examples/oncall.yaml`).
- `oncall`: `load_oncall`, `who_is_on_call`, `coverage_gaps`.
- `notes`: `TicketNotes`, what the notifier remembers per ticket, and how events update it.
- `decisions`: `decide` an event into `Notification`s, each with its ledger key.
- `facts`: what a message states, with the deadline in the recipient's time zone.
- `render`: the message of a notification for each channel (email, Slack-compatible chat,
  PagerDuty Events v2, generic webhook, console) and the team digest.
"""
