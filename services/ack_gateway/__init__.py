"""The ack gateway: acknowledging a page from its link, or from PagerDuty's webhook.

`premium-support run ack-gateway` serves a small HTTP endpoint (services.ack_gateway.http)
that verifies the signed token of a page's link (services.common.ack_token) and publishes
the `acknowledged` helpdesk update to support.inbound, as a helpdesk would. It imports no
other service's modules: intake turns the update into `escalation.acknowledged`.
"""
