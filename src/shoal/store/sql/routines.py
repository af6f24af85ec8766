"""PostgreSQL's server-side sync: a worker's whole sync as one statement.

``shoal_sync`` does on the server what :func:`shoal.scheduler.sync.sync`
does statement by statement, for the syncs that are most of them: reports
that all say "succeeded" with no outputs to promote (or none at all), and a
claim. Called alone, outside any transaction, it is its own transaction:
one round trip, and the row locks it takes are held for no network wait.

It answers exactly as the statements do, in the same order: the reports'
attempts and tasks are locked first (by task id), a fenced report is
dropped with its event, a report on a task that already ended is
superseded, the winners' dependents are readied, the worker is touched,
its leases renewed and orphans reclaimed, its claim skips the rows other
bosses hold, the run's count is taken off a shard no other transaction
holds, and a run whose count came to 0 ends. What it does not do, it
hands back undone:

- a report on an operand of a reduction, or a reduction made ready: the
  boss combines results in Python. The function answers ``defer`` having
  written nothing (or raises ``SH001``, which rolls back what it wrote), and
  the boss runs the sync statement by statement instead;
- no ready task for the worker: it answers ``idle`` and the boss looks for a
  straggler to back up (speculation), in a transaction of its own.

Installed by the schema's version 8 (and on every fresh database); the
statements in :mod:`shoal.store.sql.sync` are its specification, and the
store contract tests run both.
"""

from __future__ import annotations

__all__ = ["DEFER_SQLSTATE", "SYNC_CALL", "SYNC_FUNCTION"]

# Raised to roll the function's writes back: the boss then syncs statement by statement.
DEFER_SQLSTATE = "SH001"

SYNC_CALL = """SELECT shoal_sync(%(worker)s, %(boss)s, %(now)s, %(lease_until)s,
    %(ids)s::int[], %(exit_codes)s::int[], %(started)s::float8[], %(ended)s::float8[],
    %(logged)s::bool[], %(results)s::text[], %(outputs)s, %(logs)s, %(running)s::int[],
    %(free)s, %(max_seconds)s::float8, %(channel)s, %(origin)s)"""

SYNC_FUNCTION = r"""
CREATE OR REPLACE FUNCTION shoal_sync(
    p_worker int, p_boss int, p_now float8, p_lease_until float8,
    p_ids int[], p_exit_codes int[], p_started float8[], p_ended float8[],
    p_logged bool[], p_results text[], p_outputs text, p_logs text, p_running int[],
    p_free int, p_max_seconds float8, p_channel text, p_origin text
) RETURNS json LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    w record;
    c record;
    i int;
    k int;
    v_free int := p_free;
    v_log text;
    -- the attempts that end
    e_id int[] := '{}'; e_state text[] := '{}'; e_cause text[] := '{}'; e_exit int[] := '{}';
    e_started float8[] := '{}'; e_ended float8[] := '{}'; e_log text[] := '{}';
    -- the tasks won
    w_task int[] := '{}'; w_exit int[] := '{}'; w_result text[] := '{}';
    with_deps int[] := '{}';
    win_task int[] := '{}'; win_attempt int[] := '{}';
    -- events, in the order they happen
    v_kind text[] := '{}'; v_run int[] := '{}'; v_task int[] := '{}'; v_attempt int[] := '{}';
    v_worker int[] := '{}'; v_detail text[] := '{}';
    done_run int[] := '{}'; done_n int[] := '{}';
    succeeded int := 0;
    readied bool := false;
    reduce_ready int[];
    v_cancel int[] := '{}';
    found_any bool := false;
    seen int;
    t_id int[] := '{}'; t_run int[] := '{}'; t_name text[] := '{}'; t_spec text[] := '{}';
    t_slots int[] := '{}'; t_number int[] := '{}'; t_deps int[] := '{}'; t_operands text[] := '{}';
    t_requires text[] := '{}'; t_host text[] := '{}'; t_grp text[] := '{}';
    attempt_ids int[] := '{}';
    v_fetch json;
    taken_shard int;
    left_in_shard bigint;
    took bool;
    v_total bigint;
    run_state text;
    ended_runs int[] := '{}';
    made_ready bool;
BEGIN
    -- The reports' attempts and tasks, locked in task order (as attempts_with_tasks).
    PERFORM 1 FROM attempts a JOIN tasks t ON t.id = a.task_id
    WHERE a.id = ANY(p_ids) ORDER BY t.id FOR UPDATE OF a, t;
    FOR r IN
        SELECT u.ord::int AS ord, u.id AS attempt_id, a.id AS found, a.worker_id, a.state,
               a.task_id, a.run_id, t.name AS task_name, t.state AS task_state,
               t.n_dependents, t.attempts AS task_attempts, t.n_reducers
        FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
        LEFT JOIN attempts a ON a.id = u.id LEFT JOIN tasks t ON t.id = a.task_id
        ORDER BY u.ord
    LOOP
        i := r.ord;
        IF r.found IS NULL OR r.worker_id IS DISTINCT FROM p_worker OR r.state <> 'running' THEN
            -- Fenced: the boss already ended this attempt; what its worker says is dropped.
            v_kind := v_kind || 'report_dropped'::text; v_run := v_run || r.run_id;
            v_task := v_task || r.task_id; v_attempt := v_attempt || r.attempt_id;
            v_worker := v_worker || p_worker;
            v_detail := v_detail || ('succeeded after the attempt was ' || coalesce(r.state, 'unknown'));
            CONTINUE;
        END IF;
        v_log := CASE WHEN p_logged[i]
                    THEN p_logs || r.run_id || '/' || r.task_name || '/' || r.attempt_id || '.log' END;
        e_id := e_id || r.attempt_id; e_exit := e_exit || p_exit_codes[i];
        e_started := e_started || p_started[i]; e_ended := e_ended || p_ended[i];
        e_log := e_log || v_log;
        v_run := v_run || r.run_id; v_task := v_task || r.task_id;
        v_attempt := v_attempt || r.attempt_id; v_worker := v_worker || p_worker;
        v_detail := v_detail || NULL::text;
        IF r.task_state <> 'running' THEN
            e_state := e_state || 'superseded'::text; e_cause := e_cause || 'superseded'::text;
            v_kind := v_kind || 'attempt_superseded'::text;
            CONTINUE;
        END IF;
        IF r.n_reducers > 0 THEN
            RETURN json_build_object('defer', true);  -- nothing written yet
        END IF;
        e_state := e_state || 'succeeded'::text; e_cause := e_cause || NULL::text;
        w_task := w_task || r.task_id; w_exit := w_exit || p_exit_codes[i];
        w_result := w_result || p_results[i];
        IF r.n_dependents > 0 THEN with_deps := with_deps || r.task_id; END IF;
        IF r.task_attempts > 1 THEN
            win_task := win_task || r.task_id; win_attempt := win_attempt || r.attempt_id;
        END IF;
        v_kind := v_kind || 'task_succeeded'::text;
        k := array_position(done_run, r.run_id);
        IF k IS NULL THEN
            done_run := done_run || r.run_id; done_n := done_n || 1;
        ELSE
            done_n[k] := done_n[k] + 1;
        END IF;
        succeeded := succeeded + 1;
    END LOOP;

    UPDATE workers SET last_sync = p_now, done = done + succeeded, state = 'active', boss = p_boss
    WHERE id = p_worker AND state != 'stopped'
    RETURNING id, name, slots, labels INTO w;
    IF NOT FOUND THEN
        RETURN json_build_object('missing', true);  -- nothing written
    END IF;

    IF cardinality(e_id) > 0 THEN
        UPDATE attempts SET state = u.state, cause = u.cause, exit_code = u.exit_code,
               started = u.started, ended = u.ended, log = u.log
        FROM unnest(e_state, e_cause, e_exit, e_started, e_ended, e_log, e_id)
             AS u(state, cause, exit_code, started, ended, log, id)
        WHERE attempts.id = u.id;
    END IF;
    IF cardinality(w_task) > 0 THEN
        UPDATE tasks SET state = 'succeeded', ended = p_now, exit_code = u.exit_code, cause = NULL,
               has_result = u.result IS NOT NULL, result = u.result, outputs = p_outputs,
               worker_id = p_worker
        FROM unnest(w_exit, w_result, w_task) AS u(exit_code, result, id)
        WHERE tasks.id = u.id;
    END IF;
    FOR k IN 1 .. coalesce(cardinality(win_task), 0) LOOP
        UPDATE attempts SET state = 'superseded', cause = 'superseded', ended = p_now
        WHERE task_id = win_task[k] AND state = 'running' AND id != win_attempt[k];
    END LOOP;
    IF cardinality(with_deps) > 0 THEN
        UPDATE tasks SET pending = pending - (
            SELECT count(*) FROM deps WHERE deps.task_id = tasks.id AND deps.dep_id = ANY(with_deps))
        WHERE id IN (SELECT task_id FROM deps WHERE dep_id = ANY(with_deps));
        WITH made AS (
            UPDATE tasks SET state = 'ready'
            WHERE id IN (SELECT task_id FROM deps WHERE dep_id = ANY(with_deps))
              AND pending = 0 AND state = 'waiting'
            RETURNING id, kind)
        SELECT coalesce(bool_or(kind <> 'reduce'), false),
               array_agg(id) FILTER (WHERE kind = 'reduce')
        INTO readied, reduce_ready FROM made;
        IF reduce_ready IS NOT NULL THEN
            RAISE EXCEPTION 'a reduction became ready' USING ERRCODE = 'SH001';
        END IF;
    END IF;

    IF cardinality(p_running) > 0 THEN
        UPDATE attempts SET lease_expires = p_lease_until
        WHERE worker_id = p_worker AND state = 'running' AND id = ANY(p_running);
    END IF;
    UPDATE attempts SET lease_expires = 0
    WHERE worker_id = p_worker AND state = 'running' AND assigned < p_now
      AND id <> ALL(p_running || p_ids);
    IF cardinality(p_running) > 0 THEN
        SELECT coalesce(array_agg(id), '{}') INTO v_cancel
        FROM attempts WHERE id = ANY(p_running) AND state != 'running';
    END IF;

    -- The claim: first as many rows as free slots (most tasks take one): a claim
    -- locks no row it does not take, and others' claims skip fewer. When those
    -- do not fill the slots, the claim again as the statement makes it (the rows
    -- locked already come again), picked from the start.
    FOR claim IN 1 .. CASE WHEN p_free > 0 THEN 2 ELSE 0 END LOOP
        t_id := '{}'; t_run := '{}'; t_name := '{}'; t_spec := '{}'; t_slots := '{}';
        t_number := '{}'; t_deps := '{}'; t_operands := '{}'; t_requires := '{}';
        t_host := '{}'; t_grp := '{}';
        v_free := p_free;
        seen := 0;
        FOR c IN
            SELECT t.id, t.run_id, t.name, t.spec, t.slots, t.attempts, t.n_deps, t.operands,
                   t.requires, t.host, t.grp
            FROM tasks t
            WHERE t.state = 'ready' AND t.kind = 'command' AND t.slots <= least(p_free, w.slots)
              AND (t.host IS NULL OR t.host = w.name)
              AND (t.ready_at IS NULL OR t.ready_at <= p_now)
              AND (t.requires IS NULL
                   OR t.requires::jsonb <@ coalesce(nullif(w.labels, ''), '{}')::jsonb)
              AND (p_max_seconds IS NULL OR t.timeout IS NULL OR t.timeout <= p_max_seconds)
            ORDER BY t.priority DESC, t.id
            LIMIT CASE WHEN claim = 1 THEN p_free ELSE p_free * 2 + 8 END
            FOR UPDATE OF t SKIP LOCKED
        LOOP
            seen := seen + 1;
            CONTINUE WHEN c.slots > v_free;
            t_id := t_id || c.id; t_run := t_run || c.run_id; t_name := t_name || c.name;
            t_spec := t_spec || c.spec; t_slots := t_slots || c.slots;
            t_number := t_number || (c.attempts + 1); t_deps := t_deps || c.n_deps;
            t_operands := t_operands || c.operands;
            t_requires := t_requires || c.requires; t_host := t_host || c.host;
            t_grp := t_grp || c.grp;
            v_free := v_free - c.slots;
            EXIT WHEN v_free <= 0;
        END LOOP;
        found_any := seen > 0;
        -- Filled, or no more rows than that to take.
        EXIT WHEN v_free <= 0 OR seen < p_free;
    END LOOP;
    IF cardinality(t_id) > 0 THEN
        UPDATE tasks SET state = 'running', attempts = attempts + 1, worker_id = p_worker,
               started = coalesce(started, p_now)
        WHERE id = ANY(t_id);
        WITH made AS (
            INSERT INTO attempts
                (task_id, run_id, number, worker_id, state, assigned, started, lease_expires)
            SELECT u.t, u.r, u.n, p_worker, 'running', p_now, p_now, p_lease_until
            FROM unnest(t_id, t_run, t_number) AS u(t, r, n)
            RETURNING id, task_id)
        SELECT array_agg(made.id ORDER BY u.ord) INTO attempt_ids
        FROM made JOIN unnest(t_id) WITH ORDINALITY AS u(t, ord) ON u.t = made.task_id;
        SELECT json_agg(json_build_array(deps.task_id, d.name, coalesce(d.source_run, d.run_id),
                                         d.outputs) ORDER BY deps.task_id, d.id)
        INTO v_fetch
        FROM deps JOIN tasks d ON d.id = deps.dep_id
        WHERE deps.task_id = ANY(t_id) AND deps.task_id IN (
            SELECT u.t FROM unnest(t_id, t_deps) AS u(t, n) WHERE u.n > 0);
        FOR k IN 1 .. cardinality(t_id) LOOP
            v_kind := v_kind || 'attempt_started'::text; v_run := v_run || t_run[k];
            v_task := v_task || t_id[k]; v_attempt := v_attempt || attempt_ids[k];
            v_worker := v_worker || p_worker; v_detail := v_detail || NULL::text;
        END LOOP;
    END IF;

    -- Last, the run's count (as take_unfinished, spread_unfinished, unfinished_total).
    FOR k IN SELECT u.ord FROM unnest(done_run) WITH ORDINALITY AS u(run, ord) ORDER BY u.run LOOP
        UPDATE run_counts SET unfinished = unfinished - done_n[k]
        WHERE run_id = done_run[k] AND unfinished >= done_n[k] AND shard = (
            SELECT shard FROM run_counts WHERE run_id = done_run[k] AND unfinished >= done_n[k]
            ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING shard, unfinished INTO taken_shard, left_in_shard;
        took := FOUND;
        IF took AND left_in_shard > 0 THEN
            CONTINUE;
        END IF;
        IF NOT took THEN
            PERFORM shard FROM run_counts WHERE run_id = done_run[k] ORDER BY shard FOR UPDATE;
            UPDATE run_counts SET unfinished = greatest(0, least(run_counts.unfinished, s.upto - done_n[k]))
            FROM (SELECT shard, sum(unfinished) OVER (ORDER BY shard) AS upto
                  FROM run_counts WHERE run_id = done_run[k]) AS s
            WHERE run_counts.run_id = done_run[k] AND run_counts.shard = s.shard;
        END IF;
        SELECT state INTO run_state FROM runs WHERE id = done_run[k] FOR UPDATE;
        SELECT coalesce(sum(unfinished), 0) INTO v_total FROM run_counts WHERE run_id = done_run[k];
        IF v_total > 0 OR run_state IS DISTINCT FROM 'running' THEN
            CONTINUE;
        END IF;
        -- The run's last task: the run ends, after its tasks' events.
        run_state := CASE WHEN EXISTS (SELECT 1 FROM tasks WHERE run_id = done_run[k]
                                       AND state != 'succeeded') THEN 'failed' ELSE 'succeeded' END;
        UPDATE runs SET state = run_state, finished = p_now WHERE id = done_run[k];
        v_kind := v_kind || ('run_' || run_state); v_run := v_run || done_run[k];
        v_task := v_task || NULL::int; v_attempt := v_attempt || NULL::int;
        v_worker := v_worker || NULL::int; v_detail := v_detail || NULL::text;
        ended_runs := ended_runs || done_run[k];
    END LOOP;

    -- Wake idle workers only for what this one did not take.
    made_ready := readied;
    IF made_ready AND cardinality(t_id) > 0 THEN
        made_ready := EXISTS (SELECT 1 FROM tasks WHERE state = 'ready');
    END IF;
    IF made_ready THEN
        PERFORM pg_notify(p_channel, p_origin);
    END IF;
    IF cardinality(v_kind) > 0 THEN
        INSERT INTO events (time, kind, run_id, task_id, attempt_id, worker_id, detail)
        SELECT p_now, u.* FROM unnest(v_kind, v_run, v_task, v_attempt, v_worker, v_detail) AS u;
    END IF;
    RETURN json_build_object(
        'worker', json_build_array(w.id, w.name, w.slots, w.labels),
        'cancel', v_cancel,
        'assign', CASE WHEN cardinality(t_id) > 0 THEN
            (SELECT json_agg(json_build_array(u.a, u.t, u.r, u.name, u.spec, u.slots, u.n, u.deps,
                                              u.operands, u.requires, u.host, u.grp) ORDER BY u.ord)
             FROM unnest(attempt_ids, t_id, t_run, t_name, t_spec, t_slots, t_number, t_deps,
                         t_operands, t_requires, t_host, t_grp)
                  WITH ORDINALITY AS u(a, t, r, name, spec, slots, n, deps, operands, requires,
                                       host, grp, ord))
            ELSE '[]'::json END,
        'fetch', coalesce(v_fetch, '[]'::json),
        'idle', NOT found_any,
        'made_ready', made_ready,
        'ended', ended_runs);
END
$fn$"""
