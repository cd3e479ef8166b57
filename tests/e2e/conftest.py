"""pytest fixtures for the end-to-end suite (see tests/README.md).

`instance` is a started Postern instance with the default configuration;
`make_instance(extra_main=[...], start=True)` makes more, or ones with extra
main.cf lines. Teardown always runs `postern -c ETC stop` and then kills
anything still naming the instance's config directory, and prints the end
of the maillog, which pytest shows only when the test failed.
"""

import pytest

from postern_instance import Instance, free_port


@pytest.fixture
def make_instance():
    made = []

    def factory(extra_main=(), start=True, master_cf=None):
        inst = Instance(free_port(), extra_main=extra_main, master_cf=master_cf)
        made.append(inst)
        if start:
            inst.start()
        return inst

    yield factory
    for inst in made:
        print(f"instance {inst.root} (port {inst.port})")
        print(inst.log_tail(80))
        inst.cleanup()


@pytest.fixture
def instance(make_instance):
    return make_instance()
