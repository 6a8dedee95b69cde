import pytest
from pydantic import ValidationError

from marrowscope.core.errors import InvalidArgument, NotFound
from marrowscope.core.settings import DatabaseSettings, PeerSettings
from marrowscope.core.taxonomy import available_taxonomies, load_mapping, load_taxonomy
from marrowscope.inference.settings import InferenceSettings


def test_paper_taxonomy_trains_on_17_and_evaluates_on_16() -> None:
    taxonomy = load_taxonomy("paper17")
    assert len(taxonomy.codes) == 17 and len(taxonomy.evaluation_codes) == 16
    assert taxonomy.for_evaluation("BN") == "ART" and taxonomy.for_evaluation("SEG") == "SEG"
    with pytest.raises(InvalidArgument):
        taxonomy.check("NOPE")


def test_pbc_maps_onto_paper_classes() -> None:
    assert "pbc11" in available_taxonomies()
    mapping = load_mapping("pbc11", "paper17")
    assert mapping.map("SNE") == "SEG" and mapping.map("MMY") == "MMC"
    assert mapping.map("ERB") is None  # stages not separated: needs an expert
    with pytest.raises(NotFound):
        load_taxonomy("pbc11_to_paper17")


def test_settings_read_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARROWSCOPE_INFERENCE_PORT", "6001")
    monkeypatch.setenv("MARROWSCOPE_DB_DSN", "postgresql://x@h/db")
    monkeypatch.setenv("INFERENCE_ADDR", "10.1.1.1:1")
    assert InferenceSettings().port == 6001
    assert DatabaseSettings().dsn == "postgresql://x@h/db"
    assert PeerSettings().inference_addr == "10.1.1.1:1"


def test_settings_forbid_unknown_fields_and_are_frozen() -> None:
    with pytest.raises(ValidationError):
        InferenceSettings(not_a_setting=1)  # type: ignore[call-arg]
    settings = InferenceSettings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_misspelt_settings_are_named_with_the_nearest_known_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marrowscope.cli.stack import misspelt_settings
    from marrowscope.core.settings_check import unknown_settings

    environ = {
        "MARROWSCOPE_INFERENCE_PREFER_CUDE": "false",  # a typo under inference's prefix
        "MARROWSCOPE_INFERNCE_PORT": "1",  # a typo of the prefix itself
        "MARROWSCOPE_INFERENCE_PORT": "6001",  # right
        "MARROWSCOPE_LIS_PORT": "8080",  # another service's: left to it
        "MARROWSCOPE_HOME": "/tmp/x",  # not a setting, known
        "PATH": "/bin",
    }
    problems = unknown_settings(environ, [InferenceSettings])
    assert len(problems) == 2
    assert "MARROWSCOPE_INFERENCE_PREFER_CUDE" in problems[0] and "PREFER_CUDA?" in problems[0]
    assert (
        "MARROWSCOPE_INFERNCE_PORT" in problems[1] and "MARROWSCOPE_INFERENCE_PORT?" in problems[1]
    )
    # marrowscope up checks every service's prefix.
    monkeypatch.setenv("MARROWSCOPE_LIS_MAX_UPLOAD_BYTE", "1")
    assert any("MARROWSCOPE_LIS_MAX_UPLOAD_BYTES?" in p for p in misspelt_settings())


def test_a_service_with_a_misspelt_setting_does_not_start() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "MARROWSCOPE_SEGMENTATION_DEFAULT_ALGORTHM": "unet"}
    result = subprocess.run(
        [sys.executable, "-m", "marrowscope.segmentation"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "MARROWSCOPE_SEGMENTATION_DEFAULT_ALGORTHM" in result.stderr
    assert "MARROWSCOPE_SEGMENTATION_DEFAULT_ALGORITHM?" in result.stderr
