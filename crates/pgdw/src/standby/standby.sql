-- Standbys (run again at every `pgdw up`): what is known of each hot standby pgdw made with
-- `pgdw standby create`. A standby is PostgreSQL's own streaming replication on a physical
-- slot named pgdw_standby_<name>, its walsender's application_name the name: nothing is
-- recorded here that the server does not already know, so this reads the slots and
-- pg_stat_replication (on a standby: pg_stat_wal_receiver, and its own replay).
--
-- SECURITY DEFINER: pg_stat_replication's positions are visible only to pg_read_all_stats,
-- and a dashboard's read-only role should see its standbys' lag; no connection string, host
-- or user is returned.

CREATE OR REPLACE FUNCTION pgdw.standby_status_now()
RETURNS TABLE (name text, seen_from text, state text, sync boolean, replay_lag_bytes bigint,
               replay_lag_seconds float8, retained_wal_bytes bigint, wal_status text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_is_in_recovery() THEN
        -- This standby itself, as it sees its primary; "streaming" while the receiver is.
        RETURN QUERY
        SELECT substr(nullif(current_setting('primary_slot_name'), ''), 14), 'standby',
               coalesce(w.status, 'disconnected'), NULL::boolean,
               pg_wal_lsn_diff(greatest(w.latest_end_lsn, pg_last_wal_receive_lsn()), pg_last_wal_replay_lsn())::bigint,
               CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
                    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END,
               NULL::bigint, NULL::text
          FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver w ON true;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT substr(sl.slot_name, 14)::text, 'primary',
           coalesce(r.state, 'disconnected')::text,
           coalesce(r.sync_state IN ('sync', 'quorum'), false)
             OR current_setting('synchronous_standby_names') ~ ('(^|[ ,("])' || substr(sl.slot_name, 14) || '([ ,)"]|$)'),
           pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(r.replay_lsn, sl.restart_lsn))::bigint,
           CASE WHEN r.pid IS NULL THEN NULL
                WHEN r.replay_lsn >= pg_current_wal_lsn() THEN 0
                ELSE extract(epoch FROM coalesce(r.replay_lag, now() - r.reply_time))::float8 END,
           pg_wal_lsn_diff(pg_current_wal_lsn(), sl.restart_lsn)::bigint,
           sl.wal_status
      FROM pg_replication_slots sl
      LEFT JOIN pg_stat_replication r ON r.pid = sl.active_pid
     WHERE sl.slot_type = 'physical' AND sl.slot_name LIKE 'pgdw\_standby\_%'
     ORDER BY 1;
END $$;
COMMENT ON FUNCTION pgdw.standby_status_now() IS
    'Each standby made by pgdw standby create (on a standby: itself): state, sync, replay lag, the WAL its slot retains';

CREATE OR REPLACE VIEW pgdw.standby_status AS SELECT * FROM pgdw.standby_status_now();
COMMENT ON VIEW pgdw.standby_status IS
    'Each standby made by pgdw standby create (on a standby: itself): state, sync, replay lag, the WAL its slot retains';
