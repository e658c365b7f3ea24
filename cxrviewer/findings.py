"""Label vocabularies: the 14 ChestX-ray14 findings in the orders other tools use."""

# NIH ChestX-ray14 findings in alphabetical order (the order of our shipped model).
CXR14_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)

# Output order of the widely shared course model ``pretrained_model.h5``
# (DenseNet121 + GAP + Dense(14, sigmoid)); needed to import its weights.
COURSE_H5_LABELS = (
    "Cardiomegaly",
    "Emphysema",
    "Effusion",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Atelectasis",
    "Pneumothorax",
    "Pleural_Thickening",
    "Pneumonia",
    "Fibrosis",
    "Edema",
    "Consolidation",
)

# The NIH CSV's label for a film with none of the 14 findings.
NO_FINDING = "No Finding"
