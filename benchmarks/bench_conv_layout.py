"""One 3x3 convolution, forward + backward: fp32 vs bf16, contiguous vs channels-last (1 thread).

python benchmarks/bench_conv_layout.py 32 48 12    # channels, size, batch
python benchmarks/bench_conv_layout.py 64 96 6
"""

from __future__ import annotations

import sys
import time

import torch


def main() -> None:
    torch.set_num_threads(1)
    channels, size, batch = (int(v) for v in sys.argv[1:4])
    flops = 3 * 2 * batch * channels * channels * 9 * size * size  # forward + two backward convs
    for precision in ("fp32", "bf16"):
        for channels_last in (False, True):
            conv = torch.nn.Conv2d(channels, channels, 3, 1, 1)
            x = torch.randn(batch, channels, size, size)
            if channels_last:
                conv = conv.to(memory_format=torch.channels_last)
                x = x.to(memory_format=torch.channels_last)
            x.requires_grad_()

            def step(conv=conv, x=x, precision=precision):
                with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                    y = conv(x)
                y.float().sum().backward()

            step()
            times = []
            for _ in range(5):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            layout = "channels-last" if channels_last else "contiguous"
            print(
                f"{channels} ch {size}x{size} batch {batch} {precision} {layout}: "
                f"{min(times):.4f} s, {flops / min(times) / 1e9:.0f} GFLOP/s"
            )


if __name__ == "__main__":
    main()
