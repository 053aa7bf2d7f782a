"""The sandbox: untrusted scenario scripts run in worker processes under bubblewrap, with time and memory limits.

``pool`` is the host side (`SandboxPool`), ``command`` how a worker is started, ``limits`` the job's
resource limits, ``protocol`` the frames between host and worker, ``runner`` the worker, ``outcome`` what
a build gives back, and ``hints`` the advice added to a script's errors.
"""
