"""How tests/data/paddle/tiny.pdmodel was made (PaddlePaddle 3.3.1, CPU), for the format test.

    python -m venv /tmp/pvenv && /tmp/pvenv/bin/pip install paddlepaddle==3.3.1
    FLAGS_enable_pir_api=0 /tmp/pvenv/bin/python tests/data/paddle/export.py

FLAGS_enable_pir_api=0 makes Paddle 3 write the classic ProgramDesc (.pdmodel) that OpenVINO's
Paddle frontend reads; its default PIR .json is not readable by OpenVINO 2026.4. The printed
probabilities are recorded unrounded in expected.json: OpenVINO at f32 must reproduce them
(the weights are seeded: a re-export writes the same tiny.pdiparams, byte for byte).
"""

import json
from pathlib import Path

import numpy as np
import paddle

HERE = Path(__file__).parent


class Tiny(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 8, 3, padding=1)
        self.fc = paddle.nn.Linear(8, 10)

    def forward(self, image):  # type: ignore[no-untyped-def]
        return paddle.nn.functional.softmax(self.fc(self.conv(image).mean(axis=[2, 3])))


paddle.seed(0)
net = Tiny()
net.eval()
x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
expected = net(paddle.to_tensor(x)).numpy()
paddle.jit.save(net, str(HERE / "tiny"), input_spec=[paddle.static.InputSpec([-1, 3, -1, -1], "float32", "image")])
(HERE / "expected.json").write_text(json.dumps({"seed": 0, "shape": [1, 3, 64, 64], "probs": expected.tolist()}))
