"""Gimel's wheel also carries what `gimel deploy` needs outside a Gimel checkout.

The files sls deploys from (serverless.yml, the plugin, the handler, the pinned npm and pip
requirements) live at the project root, where `npx sls` finds them in a checkout. A wheel
built here copies them into gimel_core/deploy_files/, from which `gimel deploy` prepares a
deploy folder anywhere. They are copied at build time only, so the checkout's gimel_core/,
which the Lambda zip holds, never contains them. Everything else is in pyproject.toml.
"""

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

DEPLOY_FILES = json.loads(Path("gimel_core/rules.json").read_text())["deployFiles"]
"""Read as gimel_core.rules.DEPLOY_FILES reads them (gimel_core cannot be imported here)."""


class BuildPyWithDeployFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install deploys from here
            return
        target = Path(self.build_lib, "gimel_core", "deploy_files")
        for name in DEPLOY_FILES:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(name, target / name)


class SdistWithDeployFiles(sdist):
    """The sdist carries them too, so that a wheel built from it has them."""

    def make_distribution(self) -> None:
        self.filelist.extend(DEPLOY_FILES)
        super().make_distribution()


setup(cmdclass={"build_py": BuildPyWithDeployFiles, "sdist": SdistWithDeployFiles})
