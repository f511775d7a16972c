"""Datasets: KITTI label_2 files, COCO JSON and the built-in synthetic driving scenes."""
