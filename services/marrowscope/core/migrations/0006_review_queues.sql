-- Curation owns its review queues and batches and reads no other service's tables. A queue is
-- what experts are assigned to and take work from (an SSL campaign, or the LIS API's patient
-- review); a batch is one request for review (a campaign round, an analysis job). Both are
-- described by their requester in CreateReviewTasks and keep the requester's ids, so the
-- orchestrator and the LIS API keep naming them as before. The LIS API's stand-in
-- 'LIS_REVIEW' campaign and its rounds go away.
CREATE TABLE review_queues (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL,  -- the campaign's method (CST, AL, CST_AL, ...) or LIS_REVIEW
    taxonomy text NOT NULL,
    dataset text NOT NULL DEFAULT '',  -- where reference cells of a class come from
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE review_batches (
    id uuid PRIMARY KEY,
    queue_id uuid NOT NULL REFERENCES review_queues (id),
    requester text NOT NULL CHECK (requester IN ('campaign_round', 'analysis_job')),
    number integer NOT NULL DEFAULT 0,  -- the round number; 0 for an analysis job
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What the queue already holds keeps its queue and batch.
INSERT INTO review_queues (id, name, kind, taxonomy, dataset, created_at)
SELECT c.id, c.name, c.method, c.taxonomy, CASE WHEN c.method = 'LIS_REVIEW' THEN '' ELSE c.dataset END,
       c.created_at
FROM campaigns c WHERE EXISTS (SELECT 1 FROM review_tasks t WHERE t.campaign_id = c.id);
INSERT INTO review_batches (id, queue_id, requester, number, created_at)
SELECT r.id, r.campaign_id,
       CASE WHEN c.method = 'LIS_REVIEW' THEN 'analysis_job' ELSE 'campaign_round' END,
       CASE WHEN c.method = 'LIS_REVIEW' THEN 0 ELSE r.number END, r.started_at
FROM rounds r JOIN campaigns c ON c.id = r.campaign_id
WHERE EXISTS (SELECT 1 FROM review_tasks t WHERE t.round_id = r.id);

ALTER TABLE review_tasks DROP CONSTRAINT review_tasks_campaign_id_fkey;
ALTER TABLE review_tasks DROP CONSTRAINT review_tasks_round_id_fkey;
ALTER TABLE review_tasks RENAME COLUMN campaign_id TO queue_id;
ALTER TABLE review_tasks RENAME COLUMN round_id TO batch_id;
ALTER TABLE review_tasks ADD FOREIGN KEY (queue_id) REFERENCES review_queues (id);
ALTER TABLE review_tasks ADD FOREIGN KEY (batch_id) REFERENCES review_batches (id);

-- Assignments name a queue; an admin may assign experts before its first batch arrives, so
-- no foreign key to review_queues.
ALTER TABLE campaign_assignments DROP CONSTRAINT campaign_assignments_campaign_id_fkey;
ALTER TABLE campaign_assignments RENAME TO queue_assignments;
ALTER TABLE queue_assignments RENAME COLUMN campaign_id TO queue_id;

DELETE FROM rounds WHERE campaign_id IN (SELECT id FROM campaigns WHERE method = 'LIS_REVIEW');
DELETE FROM campaigns WHERE method = 'LIS_REVIEW';

-- The core's tables (cell registry, model registry) point at no service's table.
ALTER TABLE labels DROP CONSTRAINT labels_campaign_id_fkey;
ALTER TABLE field_images DROP CONSTRAINT field_images_specimen_id_fkey;
