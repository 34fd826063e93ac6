"""An AWS emulator on loopback for the deploy tests: LocalStack, run without Docker.

`aws.py` installs LocalStack from the pinned working set (localstack.txt) into
tests/emulator/.venv and runs it; `gimel_lambda_executor.py` is the plug-in that runs the
deployed function there (see its docstring for what is and is not emulated).
"""
