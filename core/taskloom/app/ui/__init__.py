"""The web dashboard (``taskloom ui``): runs, a run's graph and timeline, schedules, the
workflow, and actions, over the store's run history. Needs the ``ui`` extra
(``pip install 'taskloom[ui]'``: Starlette, Jinja2, uvicorn)."""
