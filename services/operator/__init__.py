"""Operator tools behind `premium-support status` and `premium-support dlq`.

The CLI is a thin layer over these modules; library errors (py-amqp, httpx,
SQLAlchemy) are translated into `OperatorError` here, at the edge.
"""
