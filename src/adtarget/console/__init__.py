"""The console: the web UI for campaign managers, served by ``adtarget serve`` at ``/console``.

Plain HTML, CSS and ES modules of vanilla JavaScript shipped as package data; the pages call the
public JSON API with the user's key, so the console has no second path to the catalog.
"""
