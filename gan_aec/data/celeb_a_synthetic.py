"""A small synthetic CelebA release in the official file layout, for tests, benchmarks and demos.

No real CelebA exists on an offline machine, yet its import, pipeline and training must be exercised
end to end. This writes what the official release has (`img_align_celeba.zip` or the extracted
folder, `list_eval_partition.txt`, `list_attr_celeba.txt`, `list_landmarks_align_celeba.txt`,
`identity_CelebA.txt`) with 178x218 RGB JPEGs of smooth random "faces": a skin-toned ellipse on a
blurred colour background, so JPEG sizes and decode costs are close to the real photos'. The
pictures mean nothing; never report a sample-quality number trained on them.

  python -m gan_aec.data.celeb_a_synthetic --out_dir=runs/celeb_a_synthetic_src --num_images=2000
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from gan_aec.data import celeb_a_import

_W, _H = celeb_a_import.IMAGE_SIZE_WH


def fake_face(rng: np.random.Generator) -> np.ndarray:
  """uint8 [218, 178, 3]: a blurred colour field with a skin-toned ellipse where the face is."""
  coarse = rng.uniform(0, 255, (7, 6, 3))
  background = np.kron(coarse, np.ones((32, 32, 1)))[:_H, :_W]
  yy, xx = np.mgrid[0:_H, 0:_W]
  cy, cx = _H / 2 + rng.normal(0, 4), _W / 2 + rng.normal(0, 4)
  face = ((yy - cy) / rng.uniform(45, 60)) ** 2 + ((xx - cx) / rng.uniform(35, 45)) ** 2 < 1
  skin = np.array([rng.uniform(150, 240), rng.uniform(110, 190), rng.uniform(90, 160)])
  image = np.where(face[..., None], skin, background)
  image += rng.normal(0, 6, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG', quality=quality)
  return buffer.getvalue()


def write_release(out_dir: str, num_train: int, num_validation: int, num_test: int, *,
                  as_zip: bool = True, annotations: bool = True, seed: int = 0) -> list[str]:
  """Writes the files; returns the image names (000001.jpg ...) in order."""
  rng = np.random.default_rng(seed)
  os.makedirs(out_dir, exist_ok=True)
  counts = (num_train, num_validation, num_test)
  names = [f'{i + 1:06d}.jpg' for i in range(sum(counts))]
  partition = [p for p, count in enumerate(counts) for _ in range(count)]
  if as_zip:
    with zipfile.ZipFile(os.path.join(out_dir, celeb_a_import.IMAGES_ZIP), 'w',
                         zipfile.ZIP_DEFLATED) as archive:
      for name in names:
        archive.writestr(f'{celeb_a_import.IMAGES_DIR}/{name}', jpeg_bytes(fake_face(rng)))
  else:
    folder = os.path.join(out_dir, celeb_a_import.IMAGES_DIR)
    os.makedirs(folder, exist_ok=True)
    for name in names:
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(jpeg_bytes(fake_face(rng)))
  with open(os.path.join(out_dir, celeb_a_import.PARTITION_FILE), 'w', encoding='utf-8') as f:
    f.writelines(f'{name} {p}\n' for name, p in zip(names, partition))
  if annotations:
    _, attr_names, landmark_names = celeb_a_import.tfds_reference()
    with open(os.path.join(out_dir, celeb_a_import.ATTR_FILE), 'w', encoding='utf-8') as f:
      f.write(f'{len(names)}\n{" ".join(attr_names)} \n')
      for name in names:
        f.write(name + ''.join(f' {v:2d}' for v in rng.choice([-1, 1], len(attr_names))) + '\n')
    with open(os.path.join(out_dir, celeb_a_import.LANDMARKS_FILE), 'w', encoding='utf-8') as f:
      f.write(f'{len(names)}\n{" ".join(landmark_names)}\n')
      for name in names:
        f.write(name + ''.join(f' {v:4d}' for v in rng.integers(60, 160, len(landmark_names)))
                + '\n')
    with open(os.path.join(out_dir, celeb_a_import.IDENTITY_FILE), 'w', encoding='utf-8') as f:
      f.writelines(f'{name} {rng.integers(1, 10178)}\n' for name in names)
  return names


def main(argv):
  del argv
  total = _NUM_IMAGES.value
  num_test = max(1, total // 10)
  num_validation = max(1, total // 10)
  write_release(_OUT_DIR.value, total - num_test - num_validation, num_validation, num_test,
                as_zip=not _FOLDER.value, seed=_SEED.value)
  print(f'Wrote a synthetic CelebA release of {total} images to {_OUT_DIR.value} (80/10/10 split). '
        f'Import it with\n  python -m gan_aec.prepare_data --dataset=celeb_a '
        f'--source_dir={_OUT_DIR.value} --data_dir=TFDS_DIR')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  _OUT_DIR = flags.DEFINE_string('out_dir', None, 'Folder to write the release into.',
                                 required=True)
  _NUM_IMAGES = flags.DEFINE_integer('num_images', 1000, 'Images in all (80/10/10 split).')
  _FOLDER = flags.DEFINE_bool('folder', False, 'Write the extracted img_align_celeba/ folder '
                              'instead of the zip.')
  _SEED = flags.DEFINE_integer('seed', 0, 'Seed of the images and annotations.')
  app.run(main)
