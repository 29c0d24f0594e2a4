"""moto server's request dispatch: what it worked out again for every request, whatever the service, is worked
out once. Targets moto 5.2.5 (pinned).

Profiled under the local pipeline's load (py-spy on the endpoint, see the README's benchmark notes), these two
were an eighth of the endpoint's CPU: finding the backend listed moto's package folder and stat'ed each entry
(os.listdir + os.path.isdir, about 160 calls), and every action looked up its method by listing the response
class's members with inspect.getmembers.
"""

from __future__ import annotations

import functools

from localcloud.servers.moto_patches.install import install


def apply() -> None:
    _moto_modules_listed_once()
    _response_methods_listed_once_per_class()


def _moto_modules_listed_once() -> None:
    """The service folders in moto's package do not change while the server runs."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    install(backends, "list_of_moto_modules", list_of_moto_modules)


def _response_methods_listed_once_per_class() -> None:
    """A response class's methods are all installed (moto's and the patches') before the first request."""
    from moto.core import responses

    listed = functools.cache(responses.method_names_from_class)

    def method_names_from_class(clazz: type) -> list[str]:
        return listed(clazz)

    install(responses, "method_names_from_class", method_names_from_class)
