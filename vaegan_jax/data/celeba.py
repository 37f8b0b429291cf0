"""CelebA's aligned-and-cropped release, as its files name things: the five files, the 40
attributes, the partition codes, and the authors' crop window.

Both the reader of the raw files (sources.py) and the writer of synthetic ones
(synthetic_celeba.py) take these names from here, so the two cannot drift apart.
"""
from __future__ import annotations

WIDTH, HEIGHT = 178, 218                       # pixels of every aligned image
ATTRIBUTE_NAMES = (
    '5_o_Clock_Shadow', 'Arched_Eyebrows', 'Attractive', 'Bags_Under_Eyes', 'Bald', 'Bangs',
    'Big_Lips', 'Big_Nose', 'Black_Hair', 'Blond_Hair', 'Blurry', 'Brown_Hair', 'Bushy_Eyebrows',
    'Chubby', 'Double_Chin', 'Eyeglasses', 'Goatee', 'Gray_Hair', 'Heavy_Makeup',
    'High_Cheekbones', 'Male', 'Mouth_Slightly_Open', 'Mustache', 'Narrow_Eyes', 'No_Beard',
    'Oval_Face', 'Pale_Skin', 'Pointy_Nose', 'Receding_Hairline', 'Rosy_Cheeks', 'Sideburns',
    'Smiling', 'Straight_Hair', 'Wavy_Hair', 'Wearing_Earrings', 'Wearing_Hat',
    'Wearing_Lipstick', 'Wearing_Necklace', 'Wearing_Necktie', 'Young')
LANDMARK_NAMES = ('lefteye_x', 'lefteye_y', 'righteye_x', 'righteye_y', 'nose_x', 'nose_y',
                  'leftmouth_x', 'leftmouth_y', 'rightmouth_x', 'rightmouth_y')
# The five files of the release, as the Google Drive and Baidu downloads name them.
FILE_NAMES = ('img_align_celeba.zip', 'list_attr_celeba.txt', 'list_eval_partition.txt',
              'list_landmarks_align_celeba.txt', 'identity_CelebA.txt')
# Where a reader looks for each part, first match wins: Drive's names, then Kaggle's layout.
IMAGES = ('img_align_celeba.zip', 'img_align_celeba/img_align_celeba', 'img_align_celeba')
ATTRIBUTE_FILES = ('list_attr_celeba.txt', 'list_attr_celeba.csv')
PARTITION_FILES = ('list_eval_partition.txt', 'list_eval_partition.csv')
PARTITIONS = {'0': 'train', '1': 'validation', '2': 'test'}
SPLIT_SIZES = {'train': 162_770, 'validation': 19_867, 'test': 19_962}      # of 202,599
# The authors' crop (dataset/celeba.py, bbox=(40, 218-30, 15, 178-15)): rows 40:188, columns
# 15:163, a 148x148 window around the face.
CROP = (40, 188, 15, 163)
# The 14 attributes the synthetic faces draw and label truthfully (synthetic_celeba.py); every
# other attribute is -1 there. Here, so that configs conditioning on them import no generator.
RENDERED_ATTRIBUTES = (
    'Bald', 'Bangs', 'Black_Hair', 'Blond_Hair', 'Brown_Hair', 'Gray_Hair', 'Eyeglasses', 'Male',
    'Mustache', 'Pale_Skin', 'Rosy_Cheeks', 'Smiling', 'Wearing_Hat', 'Wearing_Lipstick')
WHERE_TO_GET_IT = ('CelebA\'s aligned-and-cropped release: '
                   'https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive or Baidu), '
                   'or Kaggle\'s "jessicali9530/celeba-dataset"')
