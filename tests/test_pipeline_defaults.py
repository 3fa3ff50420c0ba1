"""What `streamhar run` picks when the user names no source, and the bundle for a source."""
from __future__ import annotations

import pytest

from streamhar.errors import DataNotFound, UsageError
from streamhar.pipeline.defaults import default_source, resolve_bundle


def test_without_source_a_present_data_set_is_replayed(data_dir, tmp_path):
    spec, why = default_source(str(data_dir))
    # The shared folder has DSADS and USC-HAD but no OPPORTUNITY recordings: DSADS comes first.
    assert spec == "replay:dsads:validation" and "no OPPORTUNITY recordings" in why
    (tmp_path / "usc-had").symlink_to((data_dir / "usc-had").resolve())
    assert default_source(str(tmp_path))[0] == "replay:usc-had:validation"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFound, match="streamhar data fetch"):
        default_source(str(empty))


def test_auto_bundle_follows_the_source():
    assert resolve_bundle("replay:usc-had:11", "auto") == "bundled:usc-had"
    assert resolve_bundle("replay:dsads:p6", "auto") == "bundled:dsads"
    with pytest.raises(UsageError, match="--bundle"):
        resolve_bundle("replay:opportunity", "auto")
    with pytest.raises(Exception, match="not found"):
        resolve_bundle("replay:dsads:p6", "no-such-file.safetensors")
