"""Darknet datasets: .data/list/label files, validation, the detection, classification and
joint (YOLO9000) loaders and synthetic dataset generators."""
from .dataset import (IMAGE_EXTENSIONS, DataConfig, DatasetReport, label_path, read_data_cfg, read_labels,
                      read_list, read_names, validate_dataset)
from .loader import DetectionLoader
from .synthetic import SYNTHETIC_CLASSES, generate
from .classification import (ClassificationData, ClassificationLoader, check_classification_dataset, class_truth,
                             label_of, read_classification_data)
from .synthetic_classes import generate_classes
from .joint import CLASSIFICATION_ONLY_COORD, JointData, JointLoader, is_joint_data, read_joint_data
from .synthetic_joint import generate_joint

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataConfig",
    "DatasetReport",
    "label_path",
    "read_data_cfg",
    "read_labels",
    "read_list",
    "read_names",
    "validate_dataset",
    "DetectionLoader",
    "SYNTHETIC_CLASSES",
    "generate",
    "ClassificationData",
    "ClassificationLoader",
    "check_classification_dataset",
    "class_truth",
    "label_of",
    "read_classification_data",
    "generate_classes",
    "CLASSIFICATION_ONLY_COORD",
    "JointData",
    "JointLoader",
    "is_joint_data",
    "read_joint_data",
    "generate_joint",
]
