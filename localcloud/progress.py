"""Progress lines of long-running local-cloud work, in one recognisable shape."""


def step(message: str) -> None:
    print(f"==> {message}", flush=True)
