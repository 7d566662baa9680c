-- The seeds' questions.

-- How many Postgres instances have we deployed? By state, and over time.
CREATE VIEW instances_by_state AS
SELECT state, count(*) AS instances FROM ingested_clusters GROUP BY state;
CREATE VIEW instances_deployed_per_day AS
SELECT date_trunc('day', created_at) AS day, count(*) AS deployed,
       sum(count(*)) OVER (ORDER BY date_trunc('day', created_at)) AS total
  FROM ingested_clusters GROUP BY 1;

-- Who is our most active customer? By instance usage (cpu seconds from the metrics) and by
-- events in the control plane's archive.
CREATE VIEW most_active_customers_by_usage AS
SELECT o.organization_id, o.name, sum(v.value) AS cpu_usage
  FROM metric_values v JOIN metric_labels l ON l.id = v.label_id
  JOIN organizations o ON o.organization_id = l.labels->>'organization_id'
 WHERE l.name = 'instance_cpu_usage'
 GROUP BY 1, 2;
CREATE VIEW most_active_customers_by_events AS
SELECT o.organization_id, o.name, count(*) AS events
  FROM saas_queue_archive a JOIN organizations o ON o.organization_id = a.message->>'org_id'
 GROUP BY 1, 2;

-- How many sign-ups per week? Clerk users, with the organizations they joined.
CREATE VIEW signups_per_week AS
SELECT date_trunc('week', to_timestamp(u.created_at / 1000.0)) AS week, count(*) AS signups,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM clerk_organization_memberships m WHERE m.user_id = u.user_id)) AS in_an_organization
  FROM clerk_users u GROUP BY 1;
