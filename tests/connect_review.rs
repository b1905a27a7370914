// scratch review tests
