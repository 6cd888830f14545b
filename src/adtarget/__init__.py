"""adtarget: ads audience targeting: catalog with undo, exact audiences, fast decisions."""

from __future__ import annotations

__version__ = "0.1.0"
