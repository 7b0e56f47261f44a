"""Stand-in for the get-pip bootstrap script that ansible-test downloads from ci-files.testing.ansible.com.

That host is out of reach here (only the package registries are), so `make sanity` caches this file where
ansible-test looks for its bootstrap (~/.ansible/test/cache/get_pip_<version>.py). Like get-pip.py it takes
pip-install arguments: it bootstraps pip from the interpreter's bundled ensurepip, then installs what was asked
for from the package index.
"""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
# --no-setuptools/--no-wheel are get-pip's own options (install nothing but pip), not pip's.
pip_args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *pip_args])
