"""The sandbox: untrusted scenario scripts run in worker processes under bubblewrap, with time and memory limits.

``pool`` is the host side, ``runner`` the worker, ``protocol`` the messages between them, ``hints`` the advice added to a script's errors."""
