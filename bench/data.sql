-- A synthetic read model of :cases cases over eight years, shaped like the projection's output:
-- contacts (including consultations), cases with closures at every stage, transitions, and the
-- daily counts the projection keeps. Used only by the benchmarks.
TRUNCATE metrics.contacts, metrics.cases, metrics.transitions, metrics.assignments,
         metrics.daily_counts, metrics.period_counts, metrics.duration_histograms;

INSERT INTO metrics.contacts (complaint_id, kind, channel, substance, agency, received_at, place)
SELECT md5('c' || i)::uuid,
       (ARRAY['report','report','report','report','report','rapid_response','own_initiative',
              'consultation'])[1 + i % 8],
       (ARRAY['walk_in','letter','email','phone','whatsapp','website','on_the_spot',
              'complaint_post','national_portal','partner_api'])[1 + i % 10],
       (ARRAY['electricity','land','police','education','health','water','other',
              'local_government'])[1 + (i / 7) % 8],
       'agency-' || (i % 60),
       timestamptz '2018-01-01 00:00+07' + (i * (interval '8 years' / :contacts)),
       CASE WHEN i % 10 = 6 THEN 'place ' || ((i / 10) % 400) END
FROM generate_series(1, :contacts) AS i;

-- A case's path follows a hash h of its id: 7 in 10 are closed (3 at verification, 4 after
-- examination), 6 in 10 examined; a third of those examined ask the agency for clarification,
-- and the agency answers all those later closed and three in four of the others.
INSERT INTO metrics.cases (case_id, kind, channel, substance, agency, received_at,
                           opened_status, status, version, registered_at, examination_at,
                           closed_at, closure_stage, closure_reason)
SELECT complaint_id, kind, channel, substance, agency, received_at, 'received',
       CASE WHEN closed THEN 'closed' WHEN answered THEN 'agency_responded'
            WHEN clarified THEN 'awaiting_agency' WHEN examined THEN 'in_examination'
            ELSE 'registered' END,
       2 + examined::int + clarified::int + answered::int + closed::int,
       received_at + interval '3 days',
       CASE WHEN examined THEN received_at + interval '10 days' END,
       CASE WHEN closed THEN received_at + (20 + h % 200) * interval '1 day' END,
       CASE WHEN h % 10 < 3 THEN 'verification' WHEN closed THEN 'examination' END,
       CASE WHEN h % 10 < 3 THEN 'transferred' WHEN closed THEN 'no_maladministration' END
FROM (SELECT *, h % 10 < 7 AS closed, h % 10 BETWEEN 3 AND 8 AS examined,
             h % 10 BETWEEN 3 AND 8 AND (h / 10) % 3 = 0 AS clarified,
             h % 10 BETWEEN 3 AND 8 AND (h / 10) % 3 = 0
               AND (h % 10 < 7 OR (h / 30) % 4 <> 0) AS answered
      FROM (SELECT *, abs(hashtext(complaint_id::text)) AS h FROM metrics.contacts
            WHERE kind <> 'consultation') AS c) AS c;

INSERT INTO metrics.transitions (case_id, version, action, from_status, to_status, at, agency)
SELECT case_id, 2, 'register', 'received', 'registered', registered_at, agency
FROM metrics.cases;
INSERT INTO metrics.transitions (case_id, version, action, from_status, to_status, at, agency)
SELECT case_id, 3, 'start_examination', 'registered', 'in_examination', examination_at, agency
FROM metrics.cases WHERE examination_at IS NOT NULL;
INSERT INTO metrics.transitions (case_id, version, action, from_status, to_status, at, agency,
                                 due_at)
SELECT case_id, 4, 'request_clarification', 'in_examination', 'awaiting_agency',
       examination_at + interval '2 days', agency, examination_at + interval '16 days'
FROM metrics.cases
WHERE examination_at IS NOT NULL AND (abs(hashtext(case_id::text)) / 10) % 3 = 0;
INSERT INTO metrics.transitions (case_id, version, action, from_status, to_status, at, agency,
                                 resolution, answered_after_hours, asked_at)
SELECT q.case_id, 5, 'respond', 'awaiting_agency', 'agency_responded',
       q.at + (1 + abs(hashtext(q.case_id::text)) % 100) * interval '1 hour'
            + interval '17 minutes',
       q.agency, 'accepted', 1 + abs(hashtext(q.case_id::text)) % 100, q.at
FROM metrics.transitions q JOIN metrics.cases c USING (case_id)
WHERE q.version = 4 AND c.status IN ('closed', 'agency_responded');
INSERT INTO metrics.transitions (case_id, version, action, from_status, to_status, at, agency,
                                 reason, closure_stage)
SELECT case_id, version, CASE WHEN closure_stage = 'verification' THEN 'transfer' ELSE 'close' END,
       CASE WHEN closure_stage = 'verification' THEN 'registered'
            WHEN version = 6 THEN 'agency_responded' ELSE 'in_examination' END,
       'closed', closed_at, agency, closure_reason, closure_stage
FROM metrics.cases WHERE closed_at IS NOT NULL;

INSERT INTO metrics.daily_counts (day, measure, key, n)
SELECT day, measure, key, count(*) FROM (
  SELECT (received_at AT TIME ZONE 'Asia/Jakarta')::date AS day, 'contacts' AS measure,
         kind AS key FROM metrics.contacts
  UNION ALL SELECT (received_at AT TIME ZONE 'Asia/Jakarta')::date, 'received_channel', channel
            FROM metrics.contacts WHERE kind <> 'consultation'
  UNION ALL SELECT (received_at AT TIME ZONE 'Asia/Jakarta')::date, 'received_substance',
            substance FROM metrics.contacts WHERE kind <> 'consultation'
  UNION ALL SELECT (received_at AT TIME ZONE 'Asia/Jakarta')::date, 'received_agency', agency
            FROM metrics.contacts WHERE kind <> 'consultation'
  UNION ALL SELECT (received_at AT TIME ZONE 'Asia/Jakarta')::date, 'opened',
            extract(year FROM received_at AT TIME ZONE 'Asia/Jakarta')::int::text
            FROM metrics.cases
  UNION ALL SELECT (received_at AT TIME ZONE 'Asia/Jakarta')::date, 'status_in', 'received'
            FROM metrics.cases
  UNION ALL SELECT (at AT TIME ZONE 'Asia/Jakarta')::date, 'status_out', from_status
            FROM metrics.transitions
  UNION ALL SELECT (at AT TIME ZONE 'Asia/Jakarta')::date, 'status_in', to_status
            FROM metrics.transitions WHERE to_status <> 'closed'
  UNION ALL SELECT (at AT TIME ZONE 'Asia/Jakarta')::date, 'registered', ''
            FROM metrics.transitions WHERE action = 'register'
  UNION ALL SELECT (examination_at AT TIME ZONE 'Asia/Jakarta')::date, 'examined',
            extract(year FROM received_at AT TIME ZONE 'Asia/Jakarta')::int::text
            FROM metrics.cases WHERE examination_at IS NOT NULL
  UNION ALL SELECT (closed_at AT TIME ZONE 'Asia/Jakarta')::date, 'closed',
            extract(year FROM received_at AT TIME ZONE 'Asia/Jakarta')::int::text
            FROM metrics.cases WHERE closed_at IS NOT NULL
  UNION ALL SELECT (closed_at AT TIME ZONE 'Asia/Jakarta')::date, 'closed_examined',
            extract(year FROM received_at AT TIME ZONE 'Asia/Jakarta')::int::text
            FROM metrics.cases WHERE closed_at IS NOT NULL AND examination_at IS NOT NULL
  UNION ALL SELECT (closed_at AT TIME ZONE 'Asia/Jakarta')::date, 'closed_stage', closure_stage
            FROM metrics.cases WHERE closed_at IS NOT NULL
  UNION ALL SELECT (closed_at AT TIME ZONE 'Asia/Jakarta')::date, 'closed_reason',
            closure_reason FROM metrics.cases WHERE closed_at IS NOT NULL
) AS increments GROUP BY 1, 2, 3;

-- Places and liaison, as metrics_worker.counts derives them (put in by bench/summary.py).
INSERT INTO metrics.daily_counts (day, measure, key, n)
SELECT (at AT TIME ZONE 'Asia/Jakarta')::date, measure, key, count(*)
FROM (/*PLACE_AND_LIAISON_INCREMENTS*/) AS increments GROUP BY 1, 2, 3;

-- The monthly figures by group, as metrics_worker.counts derives them (put in by
-- bench/summary.py).
INSERT INTO metrics.daily_counts (day, measure, key, n)
SELECT (at AT TIME ZONE 'Asia/Jakarta')::date, measure, key, count(*)
FROM (/*MONTHLY_INCREMENTS*/) AS increments GROUP BY 1, 2, 3;

-- What the projection keeps beside the daily counts.
INSERT INTO metrics.period_counts (grain, start, measure, key, n)
SELECT g.grain, date_trunc(g.unit, d.day)::date, d.measure, d.key, sum(d.n)
FROM metrics.daily_counts d CROSS JOIN (VALUES ('m', 'month'), ('y', 'year')) AS g (grain, unit)
GROUP BY 1, 2, 3, 4;

UPDATE metrics.cases
SET closed_after_days = floor(extract(epoch FROM closed_at - received_at) / 86400)
WHERE closed_at IS NOT NULL;

-- The duration histograms, as metrics_worker.aggregates derives them (run by bench/summary.py).
