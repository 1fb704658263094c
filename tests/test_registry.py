"""A user's own class by file or module name: loaded, or refused with the problem and the fix."""

import pytest
import torch

from pvae.base.registry import lookup


def test_a_users_file_is_loaded_and_checked_only_where_a_kind_is_asked(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    pass\n\n\ndef make():\n    return 3\n"
    )
    assert issubclass(lookup({}, f"{tmp_path}/mine.py:Net", "model", torch.nn.Module), torch.nn.Module)
    assert lookup({}, f"{tmp_path}/mine.py:make", "estimator")() == 3  # factories of other registries stay allowed
    with pytest.raises(ValueError, match=r"model '.*mine.py:make' is a function, not a class: .* torch.nn.Module"):
        lookup({}, f"{tmp_path}/mine.py:make", "model", torch.nn.Module)


def test_a_syntax_error_names_the_file_and_the_line(tmp_path):
    (tmp_path / "broken.py").write_text("x = 1\ny = (\n")
    with pytest.raises(ValueError, match=r"broken.py, line 2: .*'\(' was never closed: y = \(; fix the syntax error"):
        lookup({}, f"{tmp_path}/broken.py:Model", "model", torch.nn.Module)


@pytest.mark.parametrize(
    "name, words",
    [
        ("vea", "unknown model 'vea'; choose one of ['vae']"),
        (":Model", "names no module"),
        ("mine.py:", "names no class"),
    ],
)
def test_a_name_that_is_not_an_import_is_refused(name, words):
    with pytest.raises(ValueError) as caught:
        lookup({"vae": torch.nn.Module}, name, "model", torch.nn.Module)
    assert words in str(caught.value)


def test_a_missing_package_imported_by_the_users_file_is_named_as_such(tmp_path):
    (tmp_path / "needs.py").write_text("import nosuchpkg_for_pvae_tests\n")
    with pytest.raises(ValueError, match=r"needs.py imports 'nosuchpkg_for_pvae_tests', which is not installed"):
        lookup({}, f"{tmp_path}/needs.py:Model", "model", torch.nn.Module)
    with pytest.raises(ValueError, match=r"No module named 'nosuchmod_for_pvae'; check the module name"):
        lookup({}, "nosuchmod_for_pvae:Model", "model", torch.nn.Module)
