"""Worker-side programs aiofarm starts as child processes: the Python function runner
(:mod:`.function_runner`). It imports only the standard library (and the function's
own modules) so its start-up is cheap. The Open Job Description session runner is
:mod:`aiofarm.openjd.session_runner`."""
