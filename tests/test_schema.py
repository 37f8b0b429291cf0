"""configs/schema.py: every shipped config passes, the table covers exactly the configs' keys,
and each kind of bad value is refused with a message that names the key and what is valid."""
import ml_collections
import pytest

from vaegan_jax.configs import celeba64, schema, synthetic, tiny
from vaegan_jax.training import checkpoints

SHIPPED = [celeba64.get_config(arg) for arg in (None, 'mar', 'conditional', '32', '128', 'ours')] + [
    synthetic.get_config(arg) for arg in ('vaegan', 'vae', 'vae_disl', 'gan', 'gan,conditional',
                                          'ours')
] + [tiny.get_config(arg) for arg in ('vaegan', 'vae,conditional')]


@pytest.mark.parametrize('config', SHIPPED)
def test_shipped_configs_pass_and_have_exactly_the_schema_keys(config):
  schema.check(config)
  assert set(schema.flatten_config(config)) == set(schema.SCHEMA)


@pytest.mark.parametrize('module, faithful, preset', [
    (celeba64, None, 'ours'), (celeba64, 'mar,128', 'mar,128,ours'), (synthetic, None, 'ours'),
    (synthetic, 'vae,conditional', 'vae,conditional,ours')])
def test_the_ours_preset_changes_only_its_own_choices(module, faithful, preset):
  before = schema.flatten_config(module.get_config(faithful))
  after = schema.flatten_config(module.get_config(preset))
  changed = {key: after[key] for key in before if after[key] != before[key]}
  changed['quality.priors'] = tuple(changed['quality.priors'])
  assert changed == {'decoder_ema_decay': 0.99, 'loss.r1_weight': 1.0,
                     'quality.priors': ('gaussian', 'gmm:10', 'vae2')}


def bad(**changes):
  """The tiny config with `changes` ('section__key': value) applied."""
  config = tiny.get_config()
  for name, value in changes.items():
    section, _, key = name.rpartition('__')
    (config[section] if section else config)[key] = value
  return config


@pytest.mark.parametrize('config,message', [
    (bad(model__kind='wgan'), r"model.kind='wgan' is not a valid choice; choose one of "
                              r"\('vaegan', 'vae', 'vae_disl', 'gan'\)"),
    (bad(model__resolution=18), r'do not divide model.resolution=18.*ARCHITECTURES'),
    (bad(model__conv_gradients='cudnn'), r"'auto', 'xla', 'matmul'"),
    (bad(model__compute_dtype='float16'), r"'float32', 'bfloat16'"),
    (bad(model__condition_on=('Male', 'Male')), 'must be distinct attribute names'),
    (bad(loss__feature_layer='conv9'), r"conv9.*conv1.*conv2.*conv3.*dense1.*dense2"),
    (bad(loss__fakes='both'), "'prior_and_reconstruction', 'prior'"),
    (bad(loss__decoder_gan='minimax'), "'saturating', 'non_saturating'"),
    (bad(loss__gan_form='probability'), "'logit', 'eps'"),
    (bad(loss__reduction='max'), "'sum', 'mean'"),
    (bad(loss__gamma=-1.0), r'loss.gamma=-1.0 must be a finite number in \[0, 1e\+06\]'),
    (bad(data__flip='vertical'), r"data.flip='vertical' is not a valid choice; choose one of "
                                 r"\('none', 'batch', 'example'\)"),
    (bad(num_train_steps=0), 'num_train_steps=0: must be an integer from 1 to 1,000,000,000.'),
    (bad(eval_batches=-1), r'eval_batches=-1: must be an integer from 0 to 1,000,000,000 '
                           r'\(0: all\)'),
    (bad(quality__inception_sha256='6726825d'), r"quality.inception_sha256='6726825d' must be "
                                                r'the full SHA-256 \(64 hex digits'),
    (bad(data__max_image_pixels=0), 'data.max_image_pixels=0: must be an integer from 1 to'),
    (bad(data__name='../../x'), r"data.name='../../x': a dataset name is at most 100 letters"),
    (bad(data__eval_split='tset'), r"data.eval_split='tset': must be one of \('train', "),
    (bad(model__latent_dim=400_000_000), 'model.latent_dim=400000000: must be an integer from '
                                         '1 to 4,096'),
    (bad(model__encoder_channels=(8, 10**9)), 'each from 1 to 8,192'),
    (bad(quality__priors=('gmm:ten',)), r"quality.priors: Unknown prior 'gmm:ten'; use standard, "
                                        r'gaussian, gmm:K'),
])
def test_bad_values_are_named_with_what_is_valid(config, message):
  with pytest.raises(schema.ConfigError, match=message):
    schema.check(config)


def test_measuring_the_raw_decoder_needs_an_ema_beside_it():
  config = tiny.get_config()
  config.quality.raw_decoder = True
  with pytest.raises(schema.ConfigError, match=r'keeps no EMA; set decoder_ema_decay'):
    schema.check(config)
  config.decoder_ema_decay = 0.99
  schema.check(config)


def test_a_gan_has_no_codes_to_fit_a_prior_to():
  config = tiny.get_config('gan')
  config.quality.priors = ('gaussian',)
  with pytest.raises(schema.ConfigError, match=r"a gan run has no encoder; set quality.priors"):
    schema.check(config)


def numeric_keys():
  values = schema.flatten_config(tiny.get_config())
  return sorted(key for key, value in values.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool))


@pytest.mark.parametrize('key', numeric_keys())
def test_every_number_has_a_range_a_real_run_could_use(key):
  """Issue 45, item 4: each numeric key at -1, 1e20 (as a float and as an integer), inf and nan
  is refused in one line naming the key; at 0 it is refused or it is in the key's range."""
  for value in (-1, 1e20, 10**20, float('inf'), float('-inf'), float('nan'), 0):
    config = tiny.get_config()
    *sections, name = key.split('.')
    node = config
    for section in sections:
      node = node[section]
    with node.ignore_type():
      node[name] = value
    try:
      schema.check(config)
    except schema.ConfigError as error:
      assert str(error).startswith(f'{key}=') and '\n' not in str(error), (key, value, error)
    else:
      assert value == 0, (key, value)


def test_optimizer_settings_are_checked_per_network():
  config = tiny.get_config()
  config.optimizer.discriminator.name = 'sgd'
  with pytest.raises(schema.ConfigError,
                     match=r"optimizer.discriminator.name='sgd'.*'rmsprop', 'adam'"):
    schema.check(config)
  config = tiny.get_config()
  config.optimizer.decoder.b1 = 1.0
  with pytest.raises(schema.ConfigError, match=r"optimizer.decoder.b1=1.0 .* in \[0, 1\)"):
    schema.check(config)
  config = tiny.get_config()
  config.optimizer.encoder.schedule = 'cosine'
  with pytest.raises(schema.ConfigError, match=r"'constant', 'anneal'"):
    schema.check(config)


def test_batches_that_do_not_split_over_devices_or_processes():
  config = tiny.get_config()               # global batch 16
  with pytest.raises(schema.ConfigError, match='does not split over 3 devices'):
    schema.check(config, device_count=3)
  with pytest.raises(schema.ConfigError, match='does not split over 3 processes'):
    schema.check(config, device_count=1, process_count=3, local_device_count=1)
  with pytest.raises(schema.ConfigError, match='does not split over 3 local devices'):
    schema.check(config, device_count=2, process_count=2, local_device_count=3)
  schema.check(config, device_count=8, process_count=2, local_device_count=4)


def test_a_config_with_an_unknown_or_missing_key_is_refused():
  config = tiny.get_config()
  config.unlock()
  config.model.depth = 3
  del config.loss['margin']
  with pytest.raises(schema.ConfigError, match=r"missing \['loss.margin'\], unknown "
                                               r"\['model.depth'\]"):
    schema.check(config)


def test_unknown_key_message_lists_the_section():
  config = ml_collections.ConfigDict({'seed': 0, 'model': {'latent_dim': 8, 'kind': 'vae'}})
  assert schema.unknown_key_message(config, 'model.kind') is None
  assert schema.unknown_key_message(config, 'model.latent_dimm') == (
      "Unknown config key 'model.latent_dimm'; the keys of model are: model.kind, "
      "model.latent_dim.")
  assert schema.unknown_key_message(config, 'sede') == (
      "Unknown config key 'sede'; the keys are: seed.")
  assert schema.unknown_key_message(config, 'nosection.seed') == (
      "Unknown config section 'nosection' (in 'nosection.seed'); the sections are: model.")


def test_resumable_settings_are_those_that_leave_state_and_batches_alone():
  assert set(schema.RESUMABLE) == {
      'num_train_steps', 'log_every_steps', 'image_every_steps', 'eval_every_steps',
      'eval_batches', 'checkpoint_every_steps', 'keep_checkpoints', 'grid_size',
      'steps_per_dispatch', 'data.data_dir', 'data.raw_dir', 'data.reader_threads',
      'data.synthetic_images', 'model.conv_gradients',
      'quality.every_steps', 'quality.num_samples', 'quality.extractor', 'quality.extractor_steps',
      'quality.inception_weights', 'quality.inception_sha256', 'quality.priors',
      'quality.prior_codes', 'quality.raw_decoder', 'quality.sampler', 'data.max_image_bytes',
      'data.max_image_pixels'} | {   # the schedule: the step sets the learning rate each time
          f'optimizer.{network}.{key}' for network in ('encoder', 'decoder', 'discriminator')
          for key in ('learning_rate', 'schedule', 'end_learning_rate', 'anneal_power',
                      'anneal_epochs', 'steps_per_epoch')}


def test_a_run_saved_before_keys_were_added_reads_with_their_defaults():
  """Keys added since a run was saved (resumable ones: they shape neither the state nor the
  batches) take the default config's values, so figures still read the old run."""
  saved = tiny.get_config().to_dict()
  del saved['data']['max_image_bytes'], saved['quality']['inception_sha256']
  with pytest.raises(schema.ConfigError, match='missing .*data.max_image_bytes'):
    schema.check(ml_collections.ConfigDict(saved))
  config = schema.with_added_keys(saved, celeba64.get_config())
  schema.check(config)
  assert config.data.max_image_bytes == celeba64.get_config().data.max_image_bytes
  assert config.quality.inception_sha256 == '' and config.model.resolution == 16


def test_a_run_saved_before_model_upsample_existed_resumes_as_transposed():
  """model.upsample shapes the decoder; runs saved before it existed had transposed convs."""
  saved = tiny.get_config().to_dict()
  del saved['model']['upsample']
  config = schema.with_added_keys(saved, celeba64.get_config())
  assert config.model.upsample == 'transposed'
  current = tiny.get_config()
  assert checkpoints.config_differences(saved, current) == []
  current.model.upsample = 'resize_conv'
  assert checkpoints.config_differences(saved, current) == [
      "model.upsample: checkpoint 'transposed', config 'resize_conv'"]
