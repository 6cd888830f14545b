"""adtarget.catalog: the ads data model — tables, migrations, validation and services.

Start at ``tables.py`` (the schema), ``db.py`` (engines, ``migrate``, ``open_catalog``) and
``service.py`` (what other modules call); ``docs/data-model.md`` explains the shape.
"""
