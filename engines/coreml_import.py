"""coremltools, imported where the Core ML path needs it: quietly off macOS, and with the
package to install named when it is missing."""

from __future__ import annotations

import logging
import sys

from engines.errors import EngineError


def import_coremltools():
    """Import coremltools quietly (off macOS it warns that it cannot run models: we know)."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    if sys.platform != "darwin":
        logger.setLevel(logging.ERROR)
    try:
        import coremltools as ct
    except ImportError as exc:
        raise EngineError(
            f"the Core ML engine needs the 'coremltools' package ({exc}); "
            "install it with: pip install 'coremltools>=8'"
        ) from None
    finally:
        logger.setLevel(level)
    return ct
