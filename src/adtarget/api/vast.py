"""An ad break as a VAST 4 document: what players and server-side ad insertion read.

Why here and built with ``xml.etree``: the document is a rendering of the same answer
``POST /v1/decisions`` gives (decisions in play order, their creatives, their signed tracking
URLs), so it lives beside the API, and an XML library escapes every URL and attribute — string
concatenation of user-registered media URLs would not.

One ``<Ad sequence="n">`` with an ``<InLine>`` per filled slot: ``AdSystem``, ``AdServingId``
(the decision id), ``AdTitle``, ``Impression``, and one ``<Creative>`` with ``UniversalAdId`` and
a ``<Linear>``: ``Duration`` (the creative's ``attributes.duration``), ``TrackingEvents``
(start, the quartiles, complete), ``VideoClicks`` (``ClickTracking``; ``ClickThrough`` when the
creative has ``click_url``) and ``MediaFiles`` from the creative's attributes (``media_url``;
``mime_type``, ``width``, ``height``, ``bitrate`` when registered, else guessed from the URL
and 1920x1080). No ad: an empty ``<VAST version="4.2"/>``, which players read as "no fill".
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET

VAST_VERSION = "4.2"
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


def _media_file(parent: ET.Element, attributes: Mapping[str, Any]) -> None:
    url = attributes.get("media_url")
    if not isinstance(url, str) or not url:
        return
    mime = attributes.get("mime_type")
    if not isinstance(mime, str):
        mime = mimetypes.guess_type(url.split("?")[0])[0] or "video/mp4"
    attrs = {
        "delivery": "progressive",
        "type": mime,
        "width": str(attributes.get("width", 1920)),
        "height": str(attributes.get("height", 1080)),
    }
    if isinstance(attributes.get("bitrate"), int):
        attrs["bitrate"] = str(attributes["bitrate"])
    _text(parent, "MediaFile", url, **attrs)


def vast_document(ads: Sequence[Mapping[str, Any]]) -> bytes:
    """The VAST 4 XML for ``ads``: decisions as ``POST /v1/decisions`` answers them (with
    ``creative`` and ``tracking``), in play order."""
    root = ET.Element("VAST", {"version": VAST_VERSION})
    for n, ad in enumerate(ads, start=1):
        creative = ad["creative"]
        attributes: Mapping[str, Any] = creative.get("attributes") or {}
        tracking: Mapping[str, str] = ad["tracking"]
        node = ET.SubElement(root, "Ad", {"id": str(ad["line_item_id"]), "sequence": str(n)})
        inline = ET.SubElement(node, "InLine")
        _text(inline, "AdSystem", "adtarget")
        _text(inline, "AdServingId", str(ad["decision_id"]))
        _text(inline, "AdTitle", str(attributes.get("title") or f"line item {ad['line_item_id']}"))
        _text(inline, "Impression", tracking["impression"], id=str(ad["decision_id"]))
        creatives = ET.SubElement(inline, "Creatives")
        cr = ET.SubElement(creatives, "Creative", {"id": str(creative["id"]), "sequence": "1"})
        _text(cr, "UniversalAdId", str(creative["id"]), idRegistry="adtarget")
        linear = ET.SubElement(cr, "Linear")
        duration = attributes.get("duration")
        seconds = float(duration) if isinstance(duration, int | float) else 0.0
        _text(linear, "Duration", timecode(seconds))
        events = ET.SubElement(linear, "TrackingEvents")
        for ours, theirs in LINEAR_EVENTS.items():
            _text(events, "Tracking", tracking[ours], event=theirs)
        clicks = ET.SubElement(linear, "VideoClicks")
        if isinstance(attributes.get("click_url"), str):
            _text(clicks, "ClickThrough", attributes["click_url"])
        _text(clicks, "ClickTracking", tracking["click"])
        _media_file(ET.SubElement(linear, "MediaFiles"), attributes)
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out
