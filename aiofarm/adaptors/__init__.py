"""Worker-side programs aiofarm starts as child processes: the Open Job Description
session runner (:mod:`.openjd_task`) and the Python function runner
(:mod:`.function_runner`). They import only the standard library (and the function's
own modules) so their start-up is cheap."""
