-- reportflow's own PostgreSQL role: it owns its database and nothing else, and is
-- no superuser. Run by compose's `postgresql-app-role` job on every `up` (safe to
-- repeat), as the superuser, connected to the application's database:
--
--   psql -v ON_ERROR_STOP=1 -d reportflow -v app_role=reportflow \
--        -v app_password=... -v private_dbs=temporal,temporal_visibility,postgres \
--        -f ops/postgres/app-role.sql
--
-- private_dbs: databases the role (and any other non-superuser) may not connect to.

SELECT format('CREATE ROLE %I LOGIN', :'app_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_role') \gexec

ALTER ROLE :"app_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    NOBYPASSRLS PASSWORD :'app_password';

-- The Alembic migrations (`reportflow db upgrade`, run as this role) create tables in
-- public: the role owns the database and the schema.
SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'app_role') \gexec
ALTER SCHEMA public OWNER TO :"app_role";

-- A deployment whose migrations ran as the superuser: its tables (their sequences
-- follow them) and types pass to the role, so the next migration can alter them.
SELECT format('ALTER TABLE public.%I OWNER TO %I', tablename, :'app_role')
FROM pg_tables WHERE schemaname = 'public' AND tableowner <> :'app_role' \gexec
SELECT format('ALTER TYPE public.%I OWNER TO %I', t.typname, :'app_role')
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')
  AND pg_get_userbyid(t.typowner) <> :'app_role' \gexec

-- Temporal's databases (and the maintenance one) are no business of the app.
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', datname)
FROM pg_database
WHERE datname = ANY (string_to_array(:'private_dbs', ','))
  AND datname <> current_database() \gexec
