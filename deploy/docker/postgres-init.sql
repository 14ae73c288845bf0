-- Run once by the postgres image on first start (empty data volume), as POSTGRES_USER (crm),
-- from /docker-entrypoint-initdb.d/. One database per service: no service reads another's tables.
-- Each service's `migrate` role then creates its own tables (Alembic) inside its database.
--
-- To re-run after changing this file, remove the volume: docker compose down -v

CREATE DATABASE customer;
CREATE DATABASE interaction;
CREATE DATABASE scoring;
CREATE DATABASE retention;
-- The gateway's API keys, rate-limit buckets and audit log.
CREATE DATABASE gateway;
