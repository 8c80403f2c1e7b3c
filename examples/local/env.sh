# The environment for trying the pipeline on one machine (README, "Try it against
# RabbitMQ"). Source it from the checkout in every terminal you use:
#   . examples/local/env.sh
export AMQP_URL=amqp://guest:guest@127.0.0.1:5672//   # the local broker, default vhost
export ACCOUNTS_FILE=examples/accounts.yaml           # who is a Super Admin of which portal
export ONCALL_FILE=examples/local/oncall.yaml         # who is notified: at the local sinks
export SMTP_HOST=127.0.0.1 SMTP_PORT=8025             # the SMTP sink, for email
export ONCALL_WEBHOOK_SECRET=try-it-locally           # the HMAC secret of Lars's signed webhook
export METRICS_PORT=9100                              # /metrics and /healthz of `run all`
export LOG_FORMAT=console                             # logs for people rather than JSON
# The stores are SQLite files in the current folder: sla_timer.db and notifier.db
# (SLA_STORE_URL, NOTIFIER_STORE_URL).
