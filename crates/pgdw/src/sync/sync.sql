-- Incremental sync: pgdw.sync copies a source table's new and changed rows by watermark.

CREATE OR REPLACE FUNCTION pgdw.sync(
    target regclass, source regclass, key text[],
    updated_at text DEFAULT NULL, deletes boolean DEFAULT true, overlap interval DEFAULT '1 minute',
    OUT inserted bigint, OUT updated bigint, OUT deleted bigint)
LANGUAGE plpgsql AS $$
DECLARE
    -- Names stay arrays of plain names until format('%I') quotes each: never a joined list
    -- split again, never generated text rewritten.
    cols     text[];
    non_key  text[];
    job_name text := 'sync:' || target::text;
    mark     text;
    mark_typ text;
    filter   text := '';
    newmark  text;
    col_list text;
    s_cols   text;
    t_cols   text;
    key_list text;
    key_join text;
    set_list text;
BEGIN
    -- The columns both have: a column only the target has (a materialized column, its
    -- materialized_at) is the warehouse's own and left alone.
    SELECT array_agg(t.attname::text ORDER BY t.attnum) INTO cols
      FROM pg_attribute t
     WHERE t.attrelid = target AND t.attnum > 0 AND NOT t.attisdropped
       AND EXISTS (SELECT 1 FROM pg_attribute s WHERE s.attrelid = source AND s.attname = t.attname
                      AND s.attnum > 0 AND NOT s.attisdropped);
    IF EXISTS (SELECT 1 FROM unnest(key) k WHERE k <> ALL (cols)) THEN
        RAISE EXCEPTION 'pgdw.sync: % has no column % (the key argument)',
            CASE WHEN EXISTS (SELECT 1 FROM unnest(key) k WHERE NOT EXISTS (
                     SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = k AND NOT a.attisdropped))
                 THEN target ELSE source END,
            (SELECT string_agg(quote_ident(k), ', ') FROM unnest(key) k WHERE k <> ALL (cols));
    END IF;
    non_key := ARRAY(SELECT c FROM unnest(cols) WITH ORDINALITY u(c, i) WHERE c <> ALL (key) ORDER BY i);
    SELECT string_agg(format('%I', c), ', ' ORDER BY i), string_agg(format('s.%I', c), ', ' ORDER BY i),
           string_agg(format('t.%I', c), ', ' ORDER BY i)
      INTO col_list, s_cols, t_cols FROM unnest(cols) WITH ORDINALITY u(c, i);
    SELECT string_agg(format('%I', k), ', ' ORDER BY i), string_agg(format('t.%1$I = s.%1$I', k), ' AND ' ORDER BY i)
      INTO key_list, key_join FROM unnest(key) WITH ORDINALITY u(k, i);
    SELECT string_agg(format('%1$I = EXCLUDED.%1$I', c), ', ' ORDER BY i)
      INTO set_list FROM unnest(non_key) WITH ORDINALITY u(c, i);
    IF updated_at IS NOT NULL THEN
        SELECT format_type(atttypid, NULL) INTO mark_typ FROM pg_attribute
         WHERE attrelid = target AND attname = sync.updated_at AND NOT attisdropped;
        IF mark_typ IS NULL THEN
            RAISE EXCEPTION 'pgdw.sync: % has no column % (the updated_at argument)', target, sync.updated_at;
        END IF;
        SELECT value INTO mark FROM pgdw.watermarks w WHERE w.job = job_name;
        IF mark IS NOT NULL THEN
            -- A constant (a literal, not a parameter), so the source can be sent the filter.
            filter := format(' AND s.%I > %L::%s', updated_at, mark, mark_typ);
        END IF;
    END IF;
    -- One statement reads the source and upserts: a failing source fails it whole, and the
    -- caller's transaction (pgdw.run) keeps the previous data. Rows identical to the local
    -- copy are filtered out before the upsert, which would lock (and log) them otherwise.
    -- (An UPDATE ... FROM plus INSERT of new keys was slower: without statistics on the
    -- source, the planner hashes the whole target.)
    EXECUTE format(
        'WITH up AS (INSERT INTO %1$s AS t (%2$s)
                     SELECT %3$s FROM %4$s s
                      WHERE NOT EXISTS (SELECT 1 FROM %1$s t WHERE %5$s AND (%6$s) IS NOT DISTINCT FROM (%3$s))%7$s
                     ON CONFLICT (%8$s) DO %9$s
                     RETURNING (xmax = 0) AS ins, %10$s AS mark)
         SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins), max(mark)::text FROM up',
        target, col_list, s_cols, source, key_join, t_cols, filter, key_list,
        -- Only key columns: nothing to update, a present key is already identical.
        CASE WHEN set_list IS NULL THEN 'NOTHING'
             ELSE 'UPDATE SET ' || set_list || ' WHERE (t.*) IS DISTINCT FROM (EXCLUDED.*)' END,
        coalesce(quote_ident(updated_at), 'NULL::text'))
      INTO inserted, updated, newmark;
    deleted := 0;
    IF deletes THEN
        -- A full key pass against the source: rows gone there go here.
        EXECUTE format('DELETE FROM %s t WHERE NOT EXISTS (SELECT 1 FROM %s s WHERE %s)', target, source, key_join);
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    -- Only written rows move the watermark (skipped ones were already here). A timestamp
    -- watermark stays `overlap` behind the clock: a row committed late, with the earlier now()
    -- of a long transaction, is still ahead of it next time. Re-read rows change nothing.
    IF newmark IS NOT NULL AND mark IS NOT NULL THEN
        EXECUTE format('SELECT greatest(%L::%s, %L::%s)::text', mark, mark_typ, newmark, mark_typ) INTO newmark;
    END IF;
    IF newmark IS NOT NULL AND mark_typ LIKE 'timestamp%' THEN
        EXECUTE format('SELECT least(%L::%s, (now() - %L::interval)::%s)::text', newmark, mark_typ, overlap, mark_typ)
           INTO newmark;
    END IF;
    IF newmark IS NOT NULL THEN
        INSERT INTO pgdw.watermarks (job, value) VALUES (job_name, newmark)
        ON CONFLICT (job) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
END $$;
COMMENT ON FUNCTION pgdw.sync(regclass, regclass, text[], text, boolean, interval) IS
    'Upsert source rows changed since the watermark (less overlap) into target (unique on key), delete rows gone from source';
