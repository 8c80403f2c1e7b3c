"""SLA timer: one durable first-response clock per ticket.

The pure core lives in `calendar` (business calendars and business-time arithmetic),
`explain` (a human-readable breakdown of a span), `durations` (budget strings),
`rules` (the policy models) and `policy` (loading the policy file and computing
deadlines). None of it does I/O except reading the policy file.
"""
