-- Alerts: the state of each rule and its changes, evaluated by src/alerts/mod.rs.

CREATE TABLE IF NOT EXISTS pgdw.alert_state (
    alert          text PRIMARY KEY,
    state          text NOT NULL CHECK (state IN ('ok', 'firing', 'error')),
    since          timestamptz NOT NULL,
    evaluated_at   timestamptz NOT NULL,
    detail         text
);
COMMENT ON TABLE pgdw.alert_state IS 'Each alert rule''s current state (pgdw serve evaluates the rules)';

CREATE TABLE IF NOT EXISTS pgdw.alert_events (
    id           bigserial PRIMARY KEY,
    alert        text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    from_state   text,
    to_state     text NOT NULL,
    detail       text,
    delivered_at timestamptz,
    attempts     int NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX IF NOT EXISTS alert_events_alert_at_idx ON pgdw.alert_events (alert, at DESC);
COMMENT ON TABLE pgdw.alert_events IS 'Every alert state change, and its delivery to the webhook';
