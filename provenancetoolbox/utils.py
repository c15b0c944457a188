"""0.1.x's helpers (``provenancetoolbox.utils``), served by ptb."""
from __future__ import annotations

import json as _json
import typing as _typing

from ptb.capture.docker import dockerimageID as dockerimageID
from ptb.store.volume import Volume as _Volume

if _typing.TYPE_CHECKING:
    import cloudvolume as cv


def sendjsonfile(cloudvolume: cv.CloudVolume,
                 filename: str,
                 content: str
                 ) -> None:
    """Stores a JSON file (pretty-printed) under the volume; on ``file://`` whole or not at all.

    Args:
        cloudvolume: A CloudVolume (or a cloudpath).
        filename: The path under the volume.
        content: The JSON text.
    """
    _Volume.resolve(cloudvolume).put_json(filename, _json.loads(content))
