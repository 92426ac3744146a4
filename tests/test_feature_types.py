"""Audio feature files under the names RAD-NeRF and ER-NeRF give them: type from the name's suffix,
else from the array's shape (DeepSpeech aud.npy), an explicit type winning over both."""

import os

import numpy as np
import pytest
import torch

from pt3d_radnerf import audio
from pt3d_radnerf.data import TalkingHeadDataset

from .test_talking_head_data import make_folder

# (window, width) of each type, from RAD-NeRF's / ER-NeRF's extractors (see radnerf-facts.md 3.5).
LAYOUT = {"deepspeech": (16, 29), "esperanto": (16, 44), "wav2vec": (16, 32), "hubert": (2, 1024)}


def save(folder, name, kind, n=5, seed=0):
    array = np.random.default_rng(seed).random((n,) + LAYOUT[kind]).astype(np.float32)
    path = os.path.join(str(folder), name)
    np.save(path, array)
    return path, array


@pytest.mark.parametrize("name, kind", [
    ("aud_ds.npy", "deepspeech"), ("aud_eo.npy", "esperanto"), ("aud_hu.npy", "hubert"),
    ("aud.npy", "deepspeech"),  # RAD-NeRF's process.py writes DeepSpeech features to aud.npy
    ("aud.npy", "wav2vec"),  # RAD-NeRF's loader reads English wav2vec logits from aud.npy
    ("obama_speech_ds.npy", "deepspeech"), ("obama_speech_eo.npy", "esperanto"),  # test-audio names
    ("obama_speech_hu.npy", "hubert"), ("obama_speech.npy", "deepspeech"), ("obama_speech.npy", "wav2vec"),
    ("obama_speech.npy", "esperanto"), ("obama_speech.npy", "hubert"),
])
def test_names_as_the_originals_write_them(tmp_path, name, kind):
    path, array = save(tmp_path, name, kind)
    assert audio.feature_file_type(path, array.shape).name == kind
    loaded = audio.load_feature_file(path)
    assert torch.equal(loaded, torch.from_numpy(array))
    assert torch.equal(audio.load_feature_file(path, kind), loaded)


def test_explicit_type_wins_over_the_name(tmp_path):
    # A DeepSpeech array misnamed *_eo.npy: refused by name, loaded when the type is given.
    path, array = save(tmp_path, "speech_eo.npy", "deepspeech")
    with pytest.raises(ValueError) as info:
        audio.load_feature_file(path)
    for needle in (path, "(5, 16, 29)", "'esperanto'", "(N, 16, 44)", "'deepspeech'", "explicitly"):
        assert needle in str(info.value)
    assert torch.equal(audio.load_feature_file(path, "deepspeech"), torch.from_numpy(array))
    assert torch.equal(audio.load_feature_file(path, audio.feature_type("deepspeech")), torch.from_numpy(array))
    # RAD-NeRF --asr_model ids work as the type too.
    path, _ = save(tmp_path, "x.npy", "esperanto")
    assert audio.load_feature_file(path, "cpierse/wav2vec2-large-xlsr-53-esperanto").shape == (5, 16, 44)
    # An explicit type the array does not fit: the file, its shape, the type asked for, the one it fits.
    with pytest.raises(ValueError) as info:
        audio.load_feature_file(path, "wav2vec")
    for needle in (path, "(5, 16, 44)", "'wav2vec' features (asked for)", "(N, 16, 32)", "'esperanto'"):
        assert needle in str(info.value)


def test_shape_that_fits_no_type(tmp_path):
    path = str(tmp_path / "speech.npy")
    np.save(path, np.zeros((4, 16, 30), np.float32))
    with pytest.raises(ValueError) as info:
        audio.load_feature_file(path)
    message = str(info.value)
    for needle in (path, "(4, 16, 30)", "deepspeech (N, 16, 29)", "esperanto (N, 16, 44)", "wav2vec (N, 16, 32)",
                   "hubert (N, 2, 1024)"):
        assert needle in message
    np.save(path, np.zeros((4, 29, 16), np.float32))
    with pytest.raises(ValueError, match="swapped"):
        audio.load_feature_file(path)


def test_dataset_finds_deepspeech_aud_npy(tmp_path):
    # RAD-NeRF's own folder: DeepSpeech features in aud.npy. Auto and --audio-features deepspeech.
    root = str(tmp_path / "ds")
    make_folder(root, feature="aud.npy", width=29)
    assert TalkingHeadDataset(root).audio_features.shape == (6, 16, 29)
    data = TalkingHeadDataset(root, audio="deepspeech")
    assert data.audio_features.shape == (6, 16, 29) and data.audio_source.endswith("aud.npy")
    # The same name holding wav2vec logits: found as wav2vec, and asking for deepspeech names what is there.
    root = str(tmp_path / "w2v")
    make_folder(root, feature="aud.npy", width=32)
    assert TalkingHeadDataset(root, audio="wav2vec").audio_features.shape == (6, 16, 32)
    with pytest.raises(FileNotFoundError) as info:
        TalkingHeadDataset(root, audio="deepspeech")
    for needle in (root, "aud_ds.npy", "(N, 16, 29)", "aud.npy there has shape (6, 16, 32)"):
        assert needle in str(info.value)
    # aud_ds.npy is preferred over aud.npy when both exist (ER-NeRF's name for DeepSpeech).
    root = str(tmp_path / "both")
    make_folder(root, feature="aud.npy", width=29)
    _, named = save(root, "aud_ds.npy", "deepspeech", n=6, seed=7)
    assert torch.equal(TalkingHeadDataset(root, audio="deepspeech").audio_features, torch.from_numpy(named))


def test_find_feature_file(tmp_path):
    save(tmp_path, "aud_eo.npy", "esperanto")
    save(tmp_path, "aud_hu.npy", "hubert")
    assert audio.find_feature_file(str(tmp_path), "esperanto").endswith("aud_eo.npy")
    assert audio.find_feature_file(str(tmp_path), "facebook/hubert-large-ls960-ft").endswith("aud_hu.npy")
    with pytest.raises(FileNotFoundError, match=r"no 'wav2vec' audio features .* aud.npy of shape \(N, 16, 32\)"):
        audio.find_feature_file(str(tmp_path), "wav2vec")
    assert audio.npy_shape(str(tmp_path / "aud_hu.npy")) == (5, 2, 1024)
    assert audio.file_name_type("a/b/aud_ds.npy") == "deepspeech" and audio.file_name_type("aud.npy") is None
    assert audio.types_for_shape((3, 16, 29)) == ["deepspeech"] and audio.types_for_shape((3, 16)) == []
