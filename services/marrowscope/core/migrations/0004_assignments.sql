-- Which experts work which campaigns. A campaign nobody is assigned to is open to every
-- expert (the simulated expert and small labs need no set-up); once assigned, only its experts
-- (and admins) see and claim its tasks.
CREATE TABLE campaign_assignments (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    user_name text NOT NULL REFERENCES users (name),
    assigned_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, user_name)
);

-- An expert's own pace (decisions in the last minutes) is read on every page of the workbench.
CREATE INDEX decisions_user ON decisions (user_name, created_at);
