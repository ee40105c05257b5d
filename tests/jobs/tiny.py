"""The smallest possible job module: importing it costs next to nothing, so attempts end
as fast as a fork allows. Fast attempts are what expose races in the launcher's loop."""


class Quick:
    def run(self, number: int = 0) -> dict[str, int]:
        return {"number": number}
