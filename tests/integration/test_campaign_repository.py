"""Campaign bookkeeping on real PostgreSQL: the split, balancing input, and absorption."""

import uuid

import pytest

from marrowscope.core.errors import FailedPrecondition
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.orchestrator.repository import CampaignParameters, CampaignRepository

pytestmark = pytest.mark.integration


@pytest.fixture()
def dataset(db_pool) -> str:  # type: ignore[no-untyped-def]
    """6 reference-labelled cells per paper17 class."""
    name = f"ds-{uuid.uuid4().hex[:8]}"
    with db_pool.connection() as conn:
        for code in load_taxonomy("paper17").codes:
            for i in range(6):
                cell = uuid.uuid4()
                conn.execute(
                    """INSERT INTO cells (id, origin_key, object_key, sha256, dataset)
                       VALUES (%s, %s, %s, 'x', %s)""",
                    (cell, f"t:{cell}", f"cells/{code}-{i}.png", name),
                )
                conn.execute(
                    """INSERT INTO labels (cell_id, taxonomy, class_code, source)
                       VALUES (%s, 'paper17', %s, 'reference')""",
                    (cell, code),
                )
    return name


def test_split_and_idempotent_absorption(db_pool, dataset: str) -> None:  # type: ignore[no-untyped-def]
    store = CampaignRepository(db_pool)
    params = CampaignParameters(initial_per_class=2, validation_per_class=1, test_per_class=1)
    campaign = store.create("req-1", "t", "ST", dataset, "paper17", params)
    assert store.create("req-1", "t", "ST", dataset, "paper17", params).id == campaign.id
    assert campaign.labelled_count == 34 and campaign.pool_size == 34
    assert len(store.reference_set(campaign.id, "test", "paper17")) == 17
    pool = store.pool_cells(campaign.id)
    decisions = [
        (None, pool[0][0], "unchecked", "SEG", "self-training"),
        (str(uuid.uuid4()), pool[1][0], "label", "LY", "ana"),
        (str(uuid.uuid4()), pool[2][0], "too_difficult", "", "ana"),
    ]
    first = store.absorb(campaign.id, "paper17", 1, decisions)
    assert first.added == 2 and first.rejected == 1
    assert first.additions == {"unchecked": {"SEG": 1}, "label": {"LY": 1}}
    with db_pool.connection() as conn:
        reference = conn.execute(
            "SELECT class_code FROM labels WHERE cell_id = %s AND source = 'reference'",
            (pool[0][0],),
        ).fetchone()["class_code"]
    assert first.to_json()["wrong_pseudo_label_fraction"] == (0.0 if reference == "SEG" else 1.0)
    assert store.absorb(campaign.id, "paper17", 1, decisions).added == 0  # a retry adds nothing
    labelled = {c.cell_id: c for c in store.labelled(campaign.id, "paper17")}
    assert labelled[pool[0][0]].class_code == "SEG" and labelled[pool[0][0]].round_added == 1
    assert labelled[pool[1][0]].class_code == "LY" and pool[2][0] not in labelled
    assert len(store.pool_cells(campaign.id)) == 31
    with db_pool.connection() as conn:
        counts = conn.execute(
            """SELECT source, count(*) AS n FROM labels WHERE campaign_id = %s
               GROUP BY source ORDER BY source""",
            (campaign.id,),
        ).fetchall()
    assert [(r["source"], r["n"]) for r in counts] == [("expert", 1), ("import", 34), ("pseudo", 1)]


def test_split_refuses_too_few_cells(db_pool, dataset: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FailedPrecondition, match="lower the per-class sizes"):
        CampaignRepository(db_pool).create("", "t", "AL", dataset, "paper17", CampaignParameters())
