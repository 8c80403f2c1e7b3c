-- PostgreSQL for the docker-compose stack: run once, on the first start of an empty
-- data volume (/docker-entrypoint-initdb.d).
--
-- One database and one login role per service that keeps state, so each can reach only
-- its own data: sla_timer's clocks and outbox (SLA_STORE_URL), the notifier's ledger
-- (NOTIFIER_STORE_URL). Each role owns its database and creates its tables at start.
--
-- DEVELOPMENT DEFAULTS: these passwords are for the local stack only; they appear in
-- docker-compose.yml as well.

CREATE ROLE sla_timer LOGIN PASSWORD 'sla-timer-db-dev-password';
CREATE DATABASE sla_timer OWNER sla_timer;
REVOKE ALL ON DATABASE sla_timer FROM PUBLIC;

CREATE ROLE notifier LOGIN PASSWORD 'notifier-db-dev-password';
CREATE DATABASE notifier OWNER notifier;
REVOKE ALL ON DATABASE notifier FROM PUBLIC;
