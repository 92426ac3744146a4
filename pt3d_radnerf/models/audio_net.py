"""RAD-NeRF's audio encoders: AudioNet (per-frame window -> code) and AudioAttNet (smoothing)."""

import torch
import torch.nn as nn


class AudioNet(nn.Module):
    """Encodes one video frame's audio window into a code.

    Four Conv1d(k3, s2, p1) + LeakyReLU(0.02) over time, channels C -> 32 -> 32 -> 64 -> 64
    (time 16 -> 8 -> 4 -> 2 -> 1; a 2-frame HuBERT window goes 2 -> 1 -> 1 -> 1 -> 1, as in
    ER-NeRF, so no adaptation is needed), then Linear(64, 64), LeakyReLU(0.02), Linear(64, dim_aud).

    Args:
        dim_in: feature width C (29 DeepSpeech, 44 / 32 wav2vec2, 1024 HuBERT, n_mels log-mel).
        dim_aud: output code size.
        win_size: window length W, 1..16 (four stride-2 convs reduce at most 16 steps to 1).

    Input (B, W, C) windows in the stored (time, channel) layout; output (B, dim_aud).
    """

    def __init__(self, dim_in: int, dim_aud: int = 64, win_size: int = 16):
        super().__init__()
        if not 1 <= win_size <= 16:
            raise ValueError(f"win_size must lie in [1, 16] (4 stride-2 convs), got {win_size}")
        if dim_in < 1 or dim_aud < 1:
            raise ValueError(f"dim_in and dim_aud must be >= 1, got {dim_in}, {dim_aud}")
        self.dim_in, self.dim_aud, self.win_size = dim_in, dim_aud, win_size
        act = lambda: nn.LeakyReLU(0.02, inplace=True)  # noqa: E731
        self.encoder_conv = nn.Sequential(
            nn.Conv1d(dim_in, 32, 3, stride=2, padding=1), act(),
            nn.Conv1d(32, 32, 3, stride=2, padding=1), act(),
            nn.Conv1d(32, 64, 3, stride=2, padding=1), act(),
            nn.Conv1d(64, 64, 3, stride=2, padding=1), act(),
        )
        self.encoder_fc1 = nn.Sequential(nn.Linear(64, 64), act(), nn.Linear(64, dim_aud))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if windows.dim() != 3 or windows.shape[1:] != (self.win_size, self.dim_in):
            raise ValueError(
                f"AudioNet expects windows of shape (B, {self.win_size}, {self.dim_in}), got "
                f"{tuple(windows.shape)}"
            )
        x = self.encoder_conv(windows.transpose(1, 2))  # (B, 64, 1)
        return self.encoder_fc1(x[:, :, 0])


class AudioAttNet(nn.Module):
    """Attention over the codes of ``seq_len`` neighbouring frames (temporal smoothing).

    Conv1d(k3, s1, p1) + LeakyReLU(0.02) over the sequence, channels dim_aud -> 16 -> 8 -> 4 -> 2
    -> 1, giving one score per frame; Linear(seq_len, seq_len) and a softmax turn the scores into
    weights; the output is the weighted sum of the input codes.

    Input (seq_len, dim_aud) or (B, seq_len, dim_aud); output (dim_aud,) or (B, dim_aud).
    """

    def __init__(self, dim_aud: int = 64, seq_len: int = 8):
        super().__init__()
        self.dim_aud, self.seq_len = dim_aud, seq_len
        act = lambda: nn.LeakyReLU(0.02, inplace=True)  # noqa: E731
        channels = [dim_aud, 16, 8, 4, 2, 1]
        layers = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv1d(c_in, c_out, 3, stride=1, padding=1), act()]
        self.attention_conv = nn.Sequential(*layers)
        self.attention_net = nn.Sequential(nn.Linear(seq_len, seq_len), nn.Softmax(dim=1))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        single = codes.dim() == 2
        x = codes[None] if single else codes
        if x.dim() != 3 or x.shape[1:] != (self.seq_len, self.dim_aud):
            raise ValueError(
                f"AudioAttNet expects ({self.seq_len}, {self.dim_aud}) or (B, {self.seq_len}, "
                f"{self.dim_aud}) codes, got {tuple(codes.shape)}"
            )
        scores = self.attention_conv(x.transpose(1, 2))[:, 0]  # (B, seq_len)
        weights = self.attention_net(scores)  # (B, seq_len)
        out = (weights[..., None] * x).sum(dim=1)
        return out[0] if single else out
