"""What the services share without owning it: durations, weekdays, the store engine.

No service imports another's modules (intake, sla_timer and notifier are independent);
what two of them need lives here.
"""
