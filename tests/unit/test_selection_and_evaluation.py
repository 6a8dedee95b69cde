import random

from marrowscope.core.evaluation import evaluate
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.orchestrator.selection import (
    LabelledCell,
    Scored,
    Thresholds,
    balance,
    strategy_for,
)


def scored(cell: str, p1: float, p2: float) -> Scored:
    return Scored(
        cell_id=cell,
        object_key=f"cells/{cell}.png",
        top1_class="SEG",
        top1_probability=p1,
        margin=p1 - p2,
        top_classes=[("SEG", p1), ("BAND", p2)],
    )


POOL = [
    scored("a", 0.995, 0.003),
    scored("b", 0.93, 0.05),
    scored("c", 0.5, 0.4),
    scored("d", 0.45, 0.3),
    scored("e", 0.7, 0.2),
]


def test_paper_selection_rules() -> None:
    rng = random.Random(0)
    assert [s.cell_id for s in strategy_for("CST", Thresholds(0.99)).select(POOL, rng).cst] == ["a"]
    assert [s.cell_id for s in strategy_for("AL", Thresholds()).select(POOL, rng).al] == ["c", "d"]
    combined = strategy_for("CST_AL", Thresholds(0.9)).select(POOL, rng)
    assert [s.cell_id for s in combined.cst] == ["a", "b"]
    assert [s.cell_id for s in combined.al] == ["c", "d"]
    st = strategy_for("ST", Thresholds(0.99)).select(POOL, rng)
    assert [s.cell_id for s in st.unchecked] == ["a"] and not st.cst
    random_pick = strategy_for("RANDOM", Thresholds()).select(POOL, rng)
    assert len(random_pick.al) == 2  # as many as margin sampling asks for


def test_balance_keeps_newest_additions_first() -> None:
    cells = [LabelledCell(f"s{i}", "k", "SEG", round_added=i % 4) for i in range(10)]
    cells += [LabelledCell("l1", "k", "LY", 0)]
    chosen = balance(cells, cap=3)
    seg = [c for c in chosen if c.class_code == "SEG"]
    assert sorted(c.round_added for c in seg) == [2, 3, 3]  # rounds 3 (two cells), then 2
    assert any(c.class_code == "LY" for c in chosen)


def test_evaluation_merges_bare_nuclei_into_artifacts() -> None:
    taxonomy = load_taxonomy("paper17")
    result = evaluate(["BN", "SEG", "SEG", "LY"], ["ART", "SEG", "BAND", "LY"], taxonomy)
    assert result["accuracy"] == 0.75
    assert "BN" not in result["classes"] and result["recall"]["ART"] == 1.0
    assert result["recall"]["SEG"] == 0.5 and result["precision"]["BAND"] == 0.0
