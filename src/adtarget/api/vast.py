"""An ad break as a VAST 4 document: what players and server-side ad insertion read.

Why here and built with ``xml.etree``: the document is a rendering of the same answer
``POST /v1/decisions`` gives (decisions in play order, their creatives, their signed tracking
URLs), so it lives beside the API, and an XML library escapes every URL and attribute — string
concatenation of user-registered media URLs would not.

Valid against the IAB's VAST 4.2 XSD (``tests/api/test_vast.py``), so elements come in its order
and in its namespace (``xmlns="http://www.iab.com/VAST"``, as the IAB's samples have it). One
``<Ad sequence="n">`` with an ``<InLine>`` per filled slot: ``AdSystem``, ``Impression``,
``AdServingId`` (the decision id), ``AdTitle``, and one ``<Creative>`` with a ``<Linear>`` —
``TrackingEvents`` (start, the quartiles, complete), ``Duration`` (the creative's
``attributes.duration``), ``MediaFiles`` (``media_url``; ``mime_type``, ``width``, ``height``,
``bitrate`` when registered as such, else the type guessed from the URL and 1920x1080),
``VideoClicks`` (``ClickTracking``; ``ClickThrough`` when the creative has ``click_url``) — then
its ``UniversalAdId``. The route asks the engine for a ``playable`` break, so every decision
has a ``media_url``; one without (an embedding caller's) cannot be played and is left out (the
XSD requires a ``MediaFile``). No ad: an empty ``<VAST version="4.2"/>``, which
players read as "no fill".
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET

from adtarget.decision.pods import media_url

VAST_VERSION = "4.2"
#: The IAB's VAST 4 namespace: its XSD declares every element in it, as its samples do.
NAMESPACE = "http://www.iab.com/VAST"
#: Our tracking event names -> VAST's ``<Tracking event>`` names.
LINEAR_EVENTS = {
    "start": "start",
    "first_quartile": "firstQuartile",
    "midpoint": "midpoint",
    "third_quartile": "thirdQuartile",
    "complete": "complete",
}


def timecode(seconds: float) -> str:
    """VAST's ``HH:MM:SS.mmm``."""
    millis = round(max(seconds, 0.0) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrs)
    child.text = text
    return child


def _pixels(value: Any, default: int) -> str:
    """The XSD wants integers: a registered value that is not one falls back to the default."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return str(value if ok else default)


def _media_file(parent: ET.Element, url: str, attributes: Mapping[str, Any]) -> None:
    mime = attributes.get("mime_type")
    if not isinstance(mime, str):
        mime = mimetypes.guess_type(url.split("?")[0])[0] or "video/mp4"
    attrs = {
        "delivery": "progressive",
        "type": mime,
        "width": _pixels(attributes.get("width"), 1920),
        "height": _pixels(attributes.get("height"), 1080),
    }
    bitrate = attributes.get("bitrate")
    if isinstance(bitrate, int) and not isinstance(bitrate, bool) and bitrate > 0:
        attrs["bitrate"] = str(bitrate)
    _text(parent, "MediaFile", url, **attrs)


def vast_document(ads: Sequence[Mapping[str, Any]]) -> bytes:
    """The VAST 4 XML for ``ads``: decisions as ``POST /v1/decisions`` answers them (with
    ``creative`` and ``tracking``), in play order."""
    root = ET.Element("VAST", {"version": VAST_VERSION, "xmlns": NAMESPACE})
    playable = [
        (ad, url) for ad in ads if (url := media_url(ad["creative"].get("attributes"))) is not None
    ]
    for n, (ad, url) in enumerate(playable, start=1):
        creative = ad["creative"]
        attributes: Mapping[str, Any] = creative.get("attributes") or {}
        tracking: Mapping[str, str] = ad["tracking"]
        node = ET.SubElement(root, "Ad", {"id": str(ad["line_item_id"]), "sequence": str(n)})
        inline = ET.SubElement(node, "InLine")
        _text(inline, "AdSystem", "adtarget")
        _text(inline, "Impression", tracking["impression"], id=str(ad["decision_id"]))
        _text(inline, "AdServingId", str(ad["decision_id"]))
        _text(inline, "AdTitle", str(attributes.get("title") or f"line item {ad['line_item_id']}"))
        creatives = ET.SubElement(inline, "Creatives")
        cr = ET.SubElement(creatives, "Creative", {"id": str(creative["id"]), "sequence": "1"})
        linear = ET.SubElement(cr, "Linear")
        events = ET.SubElement(linear, "TrackingEvents")
        for ours, theirs in LINEAR_EVENTS.items():
            _text(events, "Tracking", tracking[ours], event=theirs)
        duration = attributes.get("duration")
        seconds = float(duration) if isinstance(duration, int | float) else 0.0
        _text(linear, "Duration", timecode(seconds))
        _media_file(ET.SubElement(linear, "MediaFiles"), url, attributes)
        clicks = ET.SubElement(linear, "VideoClicks")
        _text(clicks, "ClickTracking", tracking["click"])
        if isinstance(attributes.get("click_url"), str):
            _text(clicks, "ClickThrough", attributes["click_url"])
        _text(cr, "UniversalAdId", str(creative["id"]), idRegistry="adtarget")
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out
