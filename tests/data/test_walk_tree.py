"""Dataset listings follow folder links (trees are often assembled from links) but not links that loop back."""
import os

import pytest

from vqsa.corruptions.dataset_writer import list_images
from vqsa.data.folder import scan_image_folder
from vqsa.utils.paths import walk_tree


@pytest.fixture
def linked_tree(tmp_path):
    """root/src/{cat,dog}: cat/1.jpg, dog -> ../shared_dog (a link to outside: followed), and three loops:
    cat/back -> .. (src), cat/self -> . , dog/up -> ../.. (above src)."""
    src, shared = tmp_path / "src", tmp_path / "shared_dog"
    (src / "cat").mkdir(parents=True)
    shared.mkdir()
    (src / "cat" / "1.jpg").touch()
    (shared / "2.jpg").touch()
    os.symlink(shared, src / "dog")
    os.symlink("..", src / "cat" / "back")
    os.symlink(".", src / "cat" / "self")
    os.symlink("../..", shared / "up")
    return src


def test_links_between_sibling_trees_do_not_loop(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.png").touch()
    os.symlink("../c", tmp_path / "a" / "to_c")
    os.symlink("../a", tmp_path / "c" / "to_a")
    with pytest.warns(UserWarning, match="loops back"):
        walked = sorted(os.path.relpath(d, tmp_path) for d, _, _ in walk_tree(tmp_path / "a"))
    assert walked == ["a", "a/to_c"]  # a/to_c/to_a is a again


def test_walk_follows_links_but_skips_the_ones_that_loop(linked_tree):
    with pytest.warns(UserWarning, match="loops back") as caught:
        walked = {os.path.relpath(d, linked_tree): sorted(f) for d, _, f in walk_tree(linked_tree)}
    assert walked == {".": [], "cat": ["1.jpg"], "dog": ["2.jpg"]}
    assert len(caught) == 3


def test_listings_see_each_image_once(linked_tree):
    with pytest.warns(UserWarning, match="loops back"):
        assert [p.as_posix() for p in list_images(linked_tree)] == ["cat/1.jpg", "dog/2.jpg"]
    with pytest.warns(UserWarning, match="loops back"):
        assert scan_image_folder(linked_tree) == (("cat", "dog"), [("1.jpg",), ("2.jpg",)])
