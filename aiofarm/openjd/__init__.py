"""Open Job Description in aiofarm: job bundles and templates, from files to processes.

By concern, each imported by its own name (nothing is imported here, so a driver that
reads only :mod:`.plan` does not load the rest):

- :mod:`.loading`: ``load_bundle`` and ``template_spec`` make a :class:`~aiofarm.JobSpec`
  from a bundle directory or a template (what ``jobs.submit_bundle`` and
  ``jobs.submit_template`` call);
- :mod:`.documents` and :mod:`.parameters`: reading the files, decoding templates and
  checking parameter values, with errors naming the field;
- :mod:`.instance`: the job instantiated once per template and parameters (cached);
- :mod:`.plan`: a job as steps and tasks (``plan_job``; a command job is one step of
  one task) and ``RunSpec``, the process of one task attempt;
- :mod:`.taskrun`: ``task_run``, the process for one task of a template job;
- :mod:`.session_runner`: the worker-side program that enters environments, runs the
  task and exits them (standard library only, started by file path).

Drivers import from here; nothing here imports a driver. ``openjd.model`` is imported
inside the functions that need it, so importing these modules stays cheap.
"""
