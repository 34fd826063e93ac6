"""Gimel's wheel also carries what `gimel deploy` needs outside a Gimel checkout.

The files sls deploys from (serverless.yml, the plugin, the handler, the pinned npm and pip
requirements) live at the project root, where `npx sls` finds them in a checkout. A wheel
built here copies them into gimel_core/deploy_files/, from which `gimel deploy` prepares a
deploy folder anywhere. They are copied at build time only, so the checkout's gimel_core/,
which the Lambda zip holds, never contains them. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DEPLOY_FILES = (
    "serverless.yml",
    "deploy/gimel-plugin.js",
    "handler.py",
    "requirements.txt",
    "package.json",
    "package-lock.json",
)
"""Keep in step with gimel_core/cli/deploy.py's DEPLOY_FILES."""


class BuildPyWithDeployFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install deploys from here
            return
        target = Path(self.build_lib, "gimel_core", "deploy_files")
        for name in DEPLOY_FILES:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(name, target / name)


setup(cmdclass={"build_py": BuildPyWithDeployFiles})
