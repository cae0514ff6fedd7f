"""What a person reads: the HTML / Markdown / JSON report (``page`` with ``data``, ``view``, ``charts`` and
the template), the terminal verdict (``verdict_text``) and how numbers are written (``fmt``)."""
